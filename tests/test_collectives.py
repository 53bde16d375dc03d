"""The one collectives table: its users agree with it, nccl-tests rows, the docs copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.profile import measure_comm
from fcp_tune.profile.collectives import COLLECTIVES, OPS, bus_factor, collective, nccl_row
from fcp_tune.profile.schema import load_profile

REPO = Path(__file__).resolve().parents[1]


def test_profiler_has_a_call_for_every_collective():
    assert tuple(measure_comm._CALLS) == OPS


@pytest.mark.parametrize("op,n,factor", [("all_reduce", 4, 1.5), ("all_gather", 4, 0.75), ("reduce_scatter", 2, 0.5),
                                          ("all_to_all", 8, 0.875), ("p2p_ring", 5, 1.0)])
def test_bus_factors_follow_nccl_tests(op, n, factor):
    assert bus_factor(op, n) == pytest.approx(factor)
    assert COLLECTIVES[op].bus_factor(n) == pytest.approx(factor)


def test_unknown_collective_names_the_known_ones():
    with pytest.raises(ValueError, match="expected one of p2p_ring"):
        collective("broadcast")
    with pytest.raises(ValueError, match="group size"):
        COLLECTIVES["all_reduce"].bus_factor(0)


def test_split_messages_round_to_the_group():
    for op in OPS:
        elems = measure_comm.message_elems(op, 4000, 3)
        assert elems % 3 == 0 if COLLECTIVES[op].splits else elems == 1000


def test_nccl_row_matches_the_formulas():
    row = nccl_row("all_reduce", 4, 1 << 20, 1e-3, 2e-3)
    assert row["count"] == (1 << 20) // 4 and row["type"] == "float" and row["redop"] == "sum"
    assert row["time_us"] == pytest.approx(1000.0) and row["max_us"] == pytest.approx(2000.0)
    assert row["algbw_GBps"] == pytest.approx((1 << 20) / 1e-3 / 1e9)
    assert row["busbw_GBps"] == pytest.approx(row["algbw_GBps"] * 1.5)
    assert row["nccl_test"] == "all_reduce_perf"


def test_profile_rows_cover_every_sample_and_are_saved(tmp_path):
    prof = load_profile("cpu-epyc-2proc-tiny")  # a bundled profile, by name
    rows = prof.nccl_rows()
    assert len(rows) == sum(len(c.samples) for c in prof.collectives) > 0
    saved = prof.to_dict()["collectives"]
    for r in rows:
        curve = next(c for c in saved[r["collective"]] if c["group_size"] == r["ranks"])
        sample = next(s for s in curve["samples"] if s["bytes"] == r["size_B"])
        assert sample["count"] == r["count"]
        assert sample["busbw"] == pytest.approx(r["busbw_GBps"], abs=1e-4)
    assert load_profile("h100-8x-reference").nccl_rows() == []  # fits only, no samples


def test_docs_table_is_the_code_table():
    text = (REPO / "docs" / "PROFILES.md").read_text()
    for c in COLLECTIVES.values():
        line = (f"| `{c.name}` | `{c.nccl_test}` | {c.call} | {c.message} | `{c.bus_formula()}` "
                f"| `{c.inter_node}` |")
        assert line in text, f"docs/PROFILES.md collectives table is stale for {c.name}"


def test_profile_show_json_has_the_nccl_tests_lines():
    result = CliRunner().invoke(app, ["profile", "--show", "cpu-epyc-2proc-tiny", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["nccl_tests"] == load_profile("cpu-epyc-2proc-tiny").nccl_rows()
    bad = CliRunner().invoke(app, ["profile", "--show", "no-such-profile"])
    assert bad.exit_code == 2 and "error:" in bad.output and "Traceback" not in bad.output
