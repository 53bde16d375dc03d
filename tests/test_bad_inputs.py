"""The bad-input and fault campaign as a test: every command, hostile values, signals, kills.

Each bad input must give exit 2, exactly one ``error:`` line naming the bad field or value,
no traceback, no hang (a per-case alarm), and leave a pre-existing output file as it was.
The cases run in-process (typer's CliRunner: a subprocess costs 1-2 s on a loaded 2-core
machine); only the signal and concurrency cases start real processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.fileio import atomic_write_text, check_output_path, error_log_dir, write_error_log
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.profile.schema import save_profile
from fcp_tune.profile.synthetic import synthetic_profile
from fcp_tune.redact import redact

MODEL = ModelConfig(vocab_size=512, hidden=128, layers=2, heads=4, kv_heads=2, ffn_hidden=352, name="t")
CASE_TIMEOUT_S = 60
SENTINEL = "sentinel: do not touch\n"
BIG = str(10**20)
HUGE = str(10**23)


class CaseTimeout(BaseException):
    """Raised by the per-case alarm; a BaseException so that no handler turns it into a line."""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Inputs the cases name by ``{key}``: good ones to pair with a bad value, and bad files."""
    d = tmp_path_factory.mktemp("inputs")
    save_profile(synthetic_profile(world_size=2, model=MODEL), d / "prof.yaml")
    (d / "wl.txt").write_text("\n".join(str(x) for x in [60] * 30 + [200] * 6 + [900] * 2) + "\n")
    (d / "big_len.txt").write_text(f"100\n{BIG}\n")
    (d / "big_len.yaml").write_text(f"[100, {BIG}]\n")
    (d / "zero.txt").write_text("5\n0\n")
    (d / "words.txt").write_text("5\nfive\n")
    (d / "empty.txt").write_text("# nothing\n")
    (d / "bad.yaml").write_text("a: [1, 2\n")
    (d / "bad.json").write_text("[1, 2,\n")
    (d / "list.yaml").write_text("[100, 200]\n")
    (d / "hist_huge.yaml").write_text("bins: [1, 2]\ncounts: [100000000000]\n")
    (d / "hist_bad.yaml").write_text("bins: [8, 4]\ncounts: [1]\n")
    (d / "doc_v9.yaml").write_text("schema: fcp-tune/workload\nschema_version: 9\nseqlens: [1]\n")
    (d / "doc_unknown.yaml").write_text("schema: fcp-tune/workload\nschema_version: 1\nseqlens: [1]\nbogus: 1\n")
    (d / "bad.jsonl").write_text('{"num_tokens": 5}\n{"num_tokens": -5}\n')
    np.save(d / "twod.npy", np.ones((2, 3), dtype=np.int64))
    np.save(d / "float.npy", np.ones(3, dtype=np.float32))
    np.save(d / "neg.npy", np.array([3, -1], dtype=np.int64))
    np.save(d / "big.npy", np.array([3, 2**40], dtype=np.int64))
    (d / "pol_thr.yaml").write_text("schema: fcp-tune/policy\nschema_version: 1\nkind: thresholds\nworld_size: 8\n"
                                    "token_budget: 4096\nthresholds: [1, 2]\n")
    (d / "pol_v9.yaml").write_text("schema: fcp-tune/policy\nschema_version: 9\nkind: adaptive\n")
    (d / "pol_kind.yaml").write_text("schema: fcp-tune/policy\nschema_version: 1\nkind: magic\nworld_size: 2\n"
                                     "token_budget: 1024\n")
    (d / "prof_bad.yaml").write_text("schema: fcp-tune/profile\nschema_version: 1\nlabel: x\n")
    (d / "afile").write_text("a file\n")
    (d / "adir").mkdir()
    os.mkfifo(d / "fifo")
    journal = d / "stale.log"
    journal.write_text("")
    lock = Path(str(journal) + ".lock")
    lock.write_text("")
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    return {p.name.replace(".", "_"): str(p) for p in d.iterdir()} | {"dir": str(d)}


SEARCH = ["search", "--profile", "{prof_yaml}", "-w", "{wl_txt}", "-N", "2", "-b", "1024", "--trials", "3",
          "--out", "{out}"]
REPORT = ["report", "--profile", "{prof_yaml}", "-w", "{wl_txt}", "-N", "2", "-b", "1024", "--trials", "3",
          "--out", "{outdir}"]
SIM = ["simulate", "--profile", "h100-8x-reference", "-w", "lognormal", "-b", "65536", "-N", "8"]


def _search(*extra: str) -> list[str]:
    return SEARCH + list(extra)


def _report(*extra: str) -> list[str]:
    return REPORT + list(extra)


def _sim(policy: str, *extra: str) -> list[str]:
    return SIM[:1] + [policy] + SIM[1:] + list(extra)


def _show(*args: str) -> list[str]:
    return ["workload", "show", *args]


# (argv, a text the one error line must contain)
CASES: list[tuple[list[str], str]] = [
    # ---- typer's own usage errors, on every command
    (["bogus-command"], "bogus-command"),
    (["run", "--bogus"], "--bogus"),
    (["run", "--nproc", "abc"], "--nproc"),
    (["run", "--nproc", "0"], "--nproc"),
    (["run", "--steps", "0"], "--steps"),
    (["run", "--lr", "abc"], "--lr"),
    (["validate", "--seed", "-1"], "--seed"),
    (["validate", "--nproc", "0"], "--nproc"),
    (["demo", "--nproc", "0"], "--nproc"),
    (["demo", "--nproc", "17"], "--nproc"),
    (["demo", "--bogus"], "--bogus"),
    (["profile", "--nproc", "65"], "--nproc"),
    (["profile", "--max-len", "1"], "--max-len"),
    (["simulate"], "POLICY..."),
    (["simulate", "static", "--profile", "no-such-profile"], "no-such-profile"),  # issue 19: defaults, no required options
    (["simulate", "static", "-w", "no-such-workload.txt"], "no-such-workload.txt"),
    (_sim("static", "--max-communicators", "-1"), "--max-communicators"),
    (["report", "--profile", "no-such-profile"], "no-such-profile"),
    (_report("--trials", "0"), "--trials"),
    (_search("--trials", "1.5"), "--trials"),
    (_search("--comm-penalty", "-1"), "--comm-penalty"),
    (_show(), "spec"),
    (_show("lognormal", "--chars-per-token", "x"), "--chars-per-token"),
    # ---- workload show: lengths, generators, files
    (_show("{big_len_txt}"), "100,000,000,000,000,000,000"),
    (_show("{big_len_yaml}"), "100,000,000,000,000,000,000"),
    (_show("{zero_txt}"), "line 2"),
    (_show("{words_txt}"), "five"),
    (_show("{empty_txt}"), "empty"),
    (_show("{bad_yaml}"), "malformed YAML"),
    (_show("{bad_json}"), "malformed JSON"),
    (_show("{hist_huge_yaml}"), "documents"),
    (_show("{hist_bad_yaml}"), "bins"),
    (_show("{doc_v9_yaml}"), "schema_version"),
    (_show("{doc_unknown_yaml}"), "bogus"),
    (_show("{bad_jsonl}"), "line 2"),
    (_show("{twod_npy}"), "1-D"),
    (_show("{float_npy}"), "dtype"),
    (_show("{neg_npy}"), "element 1"),
    (_show("{big_npy}"), "element 1"),
    (_show("{dir}/missing.txt"), "missing.txt"),
    (_show("{fifo}"), "not a regular file"),
    (["run", "-w", "{fifo}"], "not a regular file"),
    (["run", "--policy", "{fifo}"], "fifo"),
    (_search("--profile", "{fifo}"), "fifo"),
    (_sim("static", "--profile", "{fifo}"), "fifo"),
    (_show("nosuch:n=3"), "nosuch"),
    (_show("lognormal:n=1000000000000"), "n <="),
    (_show("lognormal:n=0"), "n <="),
    (_show("lognormal:n=inf"), "n="),
    (_show("lognormal:sigma=nan"), "sigma"),
    (_show("lognormal:median=1e25"), "median"),
    (_show("lognormal:bogus=1"), "bogus"),
    (_show("lognormal:n=3,n=4"), "twice"),
    (_show("uniform:lo=5,hi=2"), "lo <= hi"),
    (_show("uniform:hi=1e12"), "hi <="),
    (_show("bimodal:long_frac=2"), "long_frac"),
    (_show("lognormal", "--max-len", "0"), "max_len"),
    (_show("lognormal", "--max-len", BIG), "max_len"),
    (_show("lognormal", "--global-batch-tokens", "0"), "global_batch_tokens"),
    (_show("lognormal", "--global-batch-tokens", BIG), "global_batch_tokens"),
    (_show("lognormal", "--global-batch-tokens", "100"), "global_batch_tokens"),
    (_show("lognormal", "--seed", "-1"), "seed"),
    (_show("lognormal", "--seed", HUGE), "seed"),
    (_show("lognormal", "--field", "x"), "--field"),
    (_show("{list_yaml}", "--field", "x"), "--field"),
    (_show("{list_yaml}", "--text-field", "x"), "--field"),
    (_show("lognormal", "--long-docs", "keep"), "long_docs"),
    (_show("lognormal", "--chars-per-token", "nan"), "chars_per_token"),
    (_show("lognormal", "--chars-per-token", "0"), "chars_per_token"),
    # ---- run: every value checked before a rank starts
    (["run", "--seed", "-1"], "seed"),
    (["run", "--seed", HUGE], "seed"),
    (["run", "--lr", "inf"], "lr"),
    (["run", "--lr", "nan"], "lr"),
    (["run", "--lr", "0"], "lr"),
    (["run", "--lr", "-1"], "lr"),
    (["run", "--timeout", "nan"], "timeout"),
    (["run", "--timeout", "inf"], "timeout"),
    (["run", "--timeout", "0"], "timeout"),
    (["run", "--timeout", "-5"], "timeout"),
    (["run", "--nproc", "100000"], "nproc"),
    (["run", "--steps", BIG], "steps"),
    (["run", "--global-batch-tokens", BIG], "global_batch_tokens"),
    (["run", "--policy", "static:0"], "degree"),
    (["run", "--policy", "static:x"], "integer"),
    (["run", "--policy", "pow2:3"], "pow2"),
    (["run", "--policy", "{dir}/nosuch.yaml"], "nosuch.yaml"),
    (["run", "--policy", "{pol_thr_yaml}"], "pol_thr.yaml"),
    (["run", "--policy", "{pol_v9_yaml}"], "schema_version"),
    (["run", "--policy", "{pol_kind_yaml}"], "magic"),
    (["run", "--compare", "static:99"], "degree"),
    (["run", "--compare", "bogus"], "bogus"),
    (["run", "--scheme", "bogus"], "bogus"),
    (["run", "--model", "nosuch"], "nosuch"),
    (["run", "-w", "lognormal:n=1000000000000"], "n <="),
    (["run", "-w", "{big_len_txt}"], "100,000,000,000,000,000,000"),
    (["run", "--profile", "nosuch"], "nosuch"),
    # ---- validate
    (["validate", "--nproc", "100000"], "100,000"),
    (["validate", "--steps", "2", "--warmup", "2"], "warmup"),
    (["validate", "--timeout", "nan"], "timeout"),
    (["validate", "--timeout", "inf"], "timeout"),
    (["validate", "--profile", "{dir}/nosuch.yaml"], "nosuch.yaml"),
    (["validate", "--profile", "{prof_bad_yaml}"], "prof_bad.yaml"),
    (["validate", "--policy", "static:0"], "degree"),
    (["validate", "--compare", "bogus"], "bogus"),
    (["validate", "--max-len", BIG], "max_len"),
    (["validate", "--global-batch-tokens", BIG], "global_batch_tokens"),
    (["validate", "--scheme", "bogus"], "bogus"),
    (["validate", "--model", "nosuch"], "nosuch"),
    (["validate", "--seed", HUGE], "seed"),
    (["validate", "-w", "{big_len_txt}"], "100,000,000,000,000,000,000"),
    # ---- search: bounds, storage, outputs checked before the search
    (_search("--trials", "0"), "trials"),
    (_search("--trials", BIG), "trials"),
    (_search("--world-size", "0"), "world_size"),
    (_search("-N", "1000000000"), "world_size"),
    (_search("-b", "0"), "token_budget"),
    (_search("-b", str(10**21)), "token_budget"),
    (_search("--ranges", "0"), "ranges"),
    (_search("--ranges", "1000"), "ranges"),
    (_search("--batches", "0"), "batches"),
    (_search("--batches", "1000000000"), "batches"),
    (_search("--seed", "-1"), "seed"),
    (_search("--seed", HUGE), "seed"),
    (_search("--comm-penalty", "inf"), "comm_penalty"),
    (_search("--comm-penalty", "nan"), "comm"),
    (_search("--sampler", "grid"), "grid"),
    (_search("--scheme", "bogus"), "bogus"),
    (_search("--global-batch-tokens", "0"), "global_batch_tokens"),
    (_search("--global-batch-tokens", BIG), "global_batch_tokens"),
    (_search("--storage", "bogus"), "bogus"),
    (_search("--storage", "sqlite:///{dir}/no/such/x.db"), "does not exist"),
    (_search("--storage", "journal:{dir}/no/such/x.log"), "does not exist"),
    (_search("--storage", "sqlite:///{afile}"), "not an SQLite database"),
    (_search("--storage", "journal:{stale_log}"), "stale lock"),
    (_search("--storage", "postgresql://fcp:hunter2@127.0.0.1:1/db"), "fcp:***@"),
    (_search("--out", "{adir}"), "is a directory"),
    (_search("--out", "{fifo}"), "not a regular file"),
    (_search("--out", "/dev/null"), "not a regular file"),
    (_search("--out", "{afile}/x.yaml"), "not a directory"),
    (_search("--plots", "{afile}"), "not a directory"),
    (_search("--profile", "{dir}/nosuch.yaml"), "nosuch.yaml"),
    (_search("--profile", "{prof_bad_yaml}"), "prof_bad.yaml"),
    (_search("--model", "nosuch"), "nosuch"),
    (_search("-w", "{big_len_txt}"), "100,000,000,000,000,000,000"),
    (_search("-w", "lognormal:n=1000000000000"), "n <="),
    # ---- simulate: the same checks as run and search
    (_sim("static:0"), "degree"),
    (_sim("megatron:0"), "degree"),
    (_sim("static:x"), "integer"),
    (_sim("static:9"), "degree"),
    (_sim("pow2:3"), "pow2"),
    (_sim("bogus"), "bogus"),
    (_sim("{pol_thr_yaml}"), "pol_thr.yaml"),
    (_sim("{pol_v9_yaml}"), "schema_version"),
    (_sim("{dir}/nosuch.yaml"), "nosuch.yaml"),
    (_sim("static", "-N", ""), "''"),
    (_sim("static", "-N", "0"), "world size"),
    (_sim("static", "-N", "8,x"), "'x'"),
    (_sim("static", "-N", "1000000000"), "world size"),
    (_sim("static", "-b", BIG), "token_budget"),
    (_sim("static", "--global-batch-tokens", "0"), "global_batch_tokens"),
    (_sim("static", "--global-batch-tokens", BIG), "global_batch_tokens"),
    (_sim("static", "-N", "16384", "-b", "1000000"), "global_batch_tokens"),
    (_sim("static", "-N", "16385"), "16,384"),
    (_sim("static", "--batches", "1000000000"), "batches"),
    (_sim("static", "--seed", "-1"), "seed"),
    (_sim("static", "--seed", HUGE), "seed"),
    (_sim("static", "--max-communicators", "1000000000"), "max_communicators"),
    (_sim("static", "--scheme", "bogus"), "bogus"),
    (_sim("static", "--profile", "nosuch"), "nosuch"),
    (_sim("static", "--model", "nosuch"), "nosuch"),
    (_sim("static", "-w", "nosuch"), "nosuch"),
    (_sim("static", "-w", "{big_len_txt}"), "100,000,000,000,000,000,000"),
    # ---- report
    (_report("--out", "{afile}"), "not a directory"),
    (_report("--trials", BIG), "trials"),
    (_report("-N", "1000000000"), "world_size"),
    (_report("-b", BIG), "token_budget"),
    (_report("--ranges", "1000"), "ranges"),
    (_report("--batches", "1000000000"), "batches"),
    (_report("--seed", "-1"), "seed"),
    (_report("--seed", HUGE), "seed"),
    (_report("--scheme", "bogus"), "bogus"),
    (_report("--global-batch-tokens", BIG), "global_batch_tokens"),
    (_report("--profile", "nosuch"), "nosuch"),
    (_report("-w", "{big_len_txt}"), "100,000,000,000,000,000,000"),
    # ---- profile: outputs checked before measuring
    (["profile", "--out", "{adir}"], "is a directory"),
    (["profile", "--out", "/dev/null"], "not a regular file"),
    (["profile", "--out", "{fifo}"], "not a regular file"),
    (["profile", "--out", "{afile}/p.yaml"], "not a directory"),
    (["profile", "--show", "{dir}/nosuch.yaml"], "nosuch.yaml"),
    (["profile", "--show", "{prof_bad_yaml}"], "prof_bad.yaml"),
    (["profile", "--model", "nosuch"], "nosuch"),
    (["profile", "--max-len", BIG], "max_len"),
    (["profile", "--nproc", "64"], "nproc"),
]


def _case_id(case: tuple[list[str], str]) -> str:
    argv = case[0]
    return " ".join(a.replace("{", "").replace("}", "") for a in argv if not a.startswith("{prof") and a != "{out}"
                    and a != "{outdir}")[:80]


def test_campaign_covers_every_command():
    commands = {argv[0] if argv[0] != "workload" else "workload show" for argv, _ in CASES}
    assert {"run", "validate", "search", "simulate", "report", "profile", "demo", "workload show"} <= commands
    assert len(CASES) >= 120


@pytest.mark.parametrize("argv, expect", CASES, ids=[f"{i:03d} {_case_id(c)}" for i, c in enumerate(CASES)])
def test_bad_input(argv, expect, files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default outputs (strategies/, profiles/) would land here
    out = tmp_path / "out.yaml"
    out.write_text(SENTINEL)
    out.chmod(0o600)
    outdir = tmp_path / "report"
    outdir.mkdir()
    (outdir / "report.md").write_text(SENTINEL)
    names = {**files, "out": str(out), "outdir": str(outdir)}
    args = [a.format(**names) for a in argv]

    def alarm(*_):
        raise CaseTimeout(f"no answer within {CASE_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        res = CliRunner().invoke(app, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    output = res.output
    lines = [line for line in output.splitlines() if line.strip()]
    assert res.exit_code == 2, output
    assert "Traceback" not in output, output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert expect in lines[0], output
    assert "hunter2" not in output
    assert out.read_text() == SENTINEL and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert (outdir / "report.md").read_text() == SENTINEL and sorted(p.name for p in outdir.iterdir()) == ["report.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml", "report"]  # nothing written by default


# ---------------------------------------------------------------------- files
def test_output_keeps_mode_and_refuses_special_files(tmp_path):
    target = tmp_path / "p.yaml"
    target.write_text("old\n")
    target.chmod(0o600)
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    atomic_write_text(link, "via link\n")
    assert link.is_symlink() and target.read_text() == "via link\n"
    os.mkfifo(tmp_path / "fifo")
    for bad in (tmp_path / "fifo", Path("/dev/null"), tmp_path):
        with pytest.raises(ValueError, match="not a regular file|is a directory"):
            atomic_write_text(bad, "x")
    dev_link = tmp_path / "devlink"
    dev_link.symlink_to("/dev/null")
    with pytest.raises(ValueError, match="not a regular file"):
        check_output_path(dev_link)
    assert Path("/dev/null").is_char_device()


def test_error_logs_are_private_and_never_follow_links(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = error_log_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    log = write_error_log("secret traceback\n")
    assert log.parent == folder and stat.S_IMODE(log.stat().st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    stem = time.strftime("%Y%m%d-%H%M%S")
    for s in range(0, 3):  # plant links under the next few names this pid would use
        planted = folder / f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(time.time() + s))}-{os.getpid()}.log"
        if not planted.exists():
            planted.symlink_to(victim)
    log2 = write_error_log("another\n")
    assert victim.read_text() == "keep\n" and not log2.is_symlink() and log2.read_text() == "another\n"
    assert stem  # the names are time-stamped
    # A shared, world-writable folder is refused (then the per-user temp folder is used).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "shared"))
    (tmp_path / "shared" / "fcp-tune" / "errors").mkdir(parents=True)
    (tmp_path / "shared" / "fcp-tune" / "errors").chmod(0o777)
    assert error_log_dir() != tmp_path / "shared" / "fcp-tune" / "errors"


def test_credentials_are_redacted():
    line = "fcp-tune search --storage 'postgresql://optuna:s3cr3t@db:5432/x' --storage mysql://tok@h/db?password=p"
    out = redact(line)
    assert "s3cr3t" not in out and "tok@" not in out and "password=p" not in out
    assert "postgresql://optuna:***@db:5432/x" in out
    assert redact("sqlite:///a.db journal:/x.log") == "sqlite:///a.db journal:/x.log"


def test_searched_policy_has_no_password(tmp_path, files):
    from fcp_tune.profile.schema import load_profile
    from fcp_tune.search.study import SearchConfig, export_policy, reproduce_command, run_search
    from fcp_tune.workload import load_workload

    cmd = reproduce_command(["search", "--storage", "postgresql://u:hunter2@db/x", "--trials", "3"])
    cfg = SearchConfig(world_size=2, token_budget=1024, trials=3, command=cmd,
                       storage=f"sqlite:///{tmp_path / 's.db'}")
    result, _, _ = run_search(cfg, load_profile(files["prof_yaml"]), load_workload(files["wl_txt"]), MODEL)
    text = export_policy(result, tmp_path / "p.yaml").read_text()
    assert "hunter2" not in text and "u:***@db" in text


# ---------------------------------------------------------------------- concurrent searches
def _worker(storage: str, prof: str, wl: str, trials: int) -> None:
    from fcp_tune.profile.schema import load_profile
    from fcp_tune.search.study import SearchConfig, run_search
    from fcp_tune.workload import load_workload

    # Two batches per score: the shared budget does not depend on how each trial is scored.
    cfg = SearchConfig(world_size=2, token_budget=1024, trials=trials, storage=storage, study_name="shared",
                       sampler="random", profile_sha256="p", workload_sha256="w", batches=2)
    run_search(cfg, load_profile(prof), load_workload(wl), MODEL)
    os._exit(0)


def test_concurrent_searches_share_the_trial_budget(tmp_path, files):
    import optuna

    from fcp_tune.search.study import completed_trials

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    ctx = mp.get_context("fork")
    trials = 40
    workers = [ctx.Process(target=_worker, args=(storage, files["prof_yaml"], files["wl_txt"], trials))
               for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
        assert w.exitcode == 0
    study = optuna.load_study(study_name="shared", storage=storage)
    assert completed_trials(study) == trials


def test_sqlite_storage_transactions_take_the_write_lock_at_begin(tmp_path, monkeypatch):
    """Workers sharing an SQLite study cannot both read an enqueued trial as WAITING and both
    claim it (optuna/optuna#4621): a transaction holds the write lock from its first read, so
    a second worker's transaction waits for it (here: times out at once)."""
    import optuna
    import sqlalchemy
    from sqlalchemy.exc import OperationalError

    import fcp_tune.search.storage as storage_mod

    monkeypatch.setattr(storage_mod, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    read = sqlalchemy.text("SELECT count(*) FROM trials")
    ours = [storage_mod.open_storage(url).engine for _ in range(2)]
    plain = [optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 0.2}}).engine
             for _ in range(2)]
    for (a, b), serialised in ((ours, True), (plain, False)):
        with a.connect() as ca, b.connect() as cb:
            with ca.begin():
                ca.execute(read)
                if serialised:
                    with pytest.raises(OperationalError, match="locked"):
                        with cb.begin():
                            cb.execute(read)
                else:  # negative control: the driver's default lets both read, then both write
                    with cb.begin():
                        cb.execute(read)
        a.dispose()
        b.dispose()


# ---------------------------------------------------------------------- signals (real processes)
def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_run(tmp_path: Path, workload: str, nproc: int = 2) -> tuple[subprocess.Popen, list[int]]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "fcp_tune", "run", "--nproc", str(nproc), "--steps", "5000",
                             "-w", workload, "--global-batch-tokens", "2000", "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    deadline = time.monotonic() + 120
    ranks: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        ranks = _children(proc.pid)
        if len(ranks) >= nproc and any(tmp_path.glob("fcp-tune-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None and len(ranks) >= nproc, proc.stderr.read() if proc.poll() is not None else ranks
    time.sleep(1.0)  # let the ranks reach their collectives
    return proc, _children(proc.pid)


@pytest.mark.slow
@pytest.mark.ci  # a real process signalled or killed: CI runs it, a plain local pytest -q does not
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_stops_every_rank_and_removes_temp_dirs(tmp_path, files, sig):
    proc, ranks = _start_run(tmp_path, files["wl_txt"])
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 128 + sig, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: terminated by " + signal.Signals(sig).name), err
    deadline = time.monotonic() + 5
    while any(_alive(r) for r in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(r) for r in ranks)
    assert not list(tmp_path.glob("fcp-tune-*"))


@pytest.mark.slow
@pytest.mark.ci  # a real process signalled or killed: CI runs it, a plain local pytest -q does not
def test_ranks_die_with_a_killed_parent(tmp_path, files):
    proc, ranks = _start_run(tmp_path, files["wl_txt"])
    proc.kill()  # SIGKILL: no handler runs in the parent
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(r) for r in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(r) for r in ranks)


@pytest.mark.slow
@pytest.mark.ci  # a real process signalled or killed: CI runs it, a plain local pytest -q does not
def test_journal_search_stops_on_sigint_within_5_s(tmp_path, files):
    journal = tmp_path / "j.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "fcp_tune", "search", "--profile", files["prof_yaml"], "-w",
                             files["wl_txt"], "-N", "2", "-b", "1024", "--trials", "100000", "--storage",
                             f"journal:{journal}", "--out", str(tmp_path / "o.yaml")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 60:  # some trials finished
            break
        time.sleep(0.3)
    assert proc.poll() is None
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 5, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and "interrupted" in lines[0], err
    assert not Path(str(journal) + ".lock").exists()
