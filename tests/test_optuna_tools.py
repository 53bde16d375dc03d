"""A study written by ``fcp-tune search --storage`` opens in Optuna's own tools.

``optuna.load_study`` and ``trials_dataframe()`` show each trial's thresholds, degrees and
predicted step time as columns; optuna-dashboard (the ``dashboard`` extra) loads the
study through its WSGI app, called in-process (no server, no socket).
"""

from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.policy import load_policy
from fcp_tune.search.attrs import ATTR_KEYS, trial_attrs

TRIALS = 6


def _search(tmp_path, storage: str) -> dict:
    out = tmp_path / "policy.yaml"
    result = CliRunner().invoke(app, ["search", "--trials", str(TRIALS), "--batches", "2", "--storage", storage,
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert load_policy(out).metadata["search"]["study_name"] == data["study_name"]
    return data


def _storages(tmp_path):
    journal = tmp_path / "study.log"
    sqlite = f"sqlite:///{tmp_path / 'study.db'}"

    def open_journal():
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(journal)))

    return [(sqlite, lambda: sqlite), (f"journal:{journal}", open_journal)]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_study_opens_in_optuna_with_readable_columns(tmp_path, kind):
    pytest.importorskip("pandas")  # trials_dataframe needs it (in the test extra)
    spec, opener = dict(zip(["sqlite", "journal"], _storages(tmp_path)))[kind]
    data = _search(tmp_path, spec)
    study = optuna.load_study(study_name=data["study_name"], storage=opener())
    df = study.trials_dataframe()
    for key in ATTR_KEYS:
        assert f"user_attrs_{key}" in df.columns, sorted(df.columns)
    done = df[df["state"] == "COMPLETE"]
    assert len(done) == TRIALS
    for _, row in done.iterrows():
        thresholds, degrees = list(row["user_attrs_thresholds"]), list(row["user_attrs_degrees"])
        assert len(degrees) == len(thresholds) + 1 == 5  # --ranges 5
        assert thresholds == sorted(thresholds) and all(d >= 1 for d in degrees)
        assert row["user_attrs_predicted_step_s"] == pytest.approx(row["value"])
    best = study.best_trial
    assert best.user_attrs["predicted_step_s"] == pytest.approx(data["predicted"]["step_s"])


def test_trial_attrs_rejects_mismatched_degrees():
    assert trial_attrs([10, 20], [1, 2, 4], 0.5) == {"thresholds": [10, 20], "degrees": [1, 2, 4],
                                                    "predicted_step_s": 0.5}
    with pytest.raises(ValueError, match="degrees"):
        trial_attrs([10, 20], [1, 2], 0.5)


def _get(wsgi_app, path: str, query: str = "") -> tuple[str, object]:
    env: dict = {}
    setup_testing_defaults(env)
    env.update(PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD="GET")
    status: list[str] = []
    body = b"".join(wsgi_app(env, lambda s, headers, *exc: status.append(s)))
    return status[0], json.loads(body)


def test_study_loads_in_optuna_dashboard(tmp_path):
    dashboard = pytest.importorskip("optuna_dashboard")  # pip install "fcp-tune[dashboard]"
    spec = f"sqlite:///{tmp_path / 'study.db'}"
    data = _search(tmp_path, spec)
    wsgi_app = dashboard.wsgi(spec)
    status, studies = _get(wsgi_app, "/api/studies")
    assert status.startswith("200"), status
    summary = next(s for s in studies["study_summaries"] if s["study_name"] == data["study_name"])
    status, detail = _get(wsgi_app, f"/api/studies/{summary['study_id']}", "after=0")
    assert status.startswith("200"), status
    assert len([t for t in detail["trials"] if t["state"] == "Complete"]) == TRIALS
    attrs = {a["key"]: a["value"] for a in detail["trials"][0]["user_attrs"]}
    assert set(ATTR_KEYS) <= set(attrs)
    assert json.loads(attrs["degrees"]) and json.loads(attrs["thresholds"]) is not None
