"""Workload loading (every format), max_len handling, stats, the batch sampler and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fcp_tune.errors import FcpTuneError
from fcp_tune.fileio import write_yaml
from fcp_tune.workload import (
    MIN_DEFAULT_BATCH_TOKENS,
    BatchSampler,
    Workload,
    compute_stats,
    default_thresholds,
    load_workload,
)

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def lens(spec: str, **kw) -> list[int]:
    return list(load_workload(spec, **kw).seqlens)


# --- loaders ---------------------------------------------------------------------------------


def test_int_text_file_skips_blanks_and_comments(tmp_path):
    spec = write(tmp_path / "l.txt", "# header\n100\n\n  200  # inline\n300\n")
    wl = load_workload(spec)
    assert wl.seqlens == (100, 200, 300)
    assert wl.name == "l" and wl.source == spec and wl.max_len is None


def test_file_without_known_suffix_is_int_text(tmp_path):
    assert lens(write(tmp_path / "lengths", "7\n8\n")) == [7, 8]


def test_json_list_and_histogram(tmp_path):
    assert lens(write(tmp_path / "a.json", "[3, 1, 2]")) == [3, 1, 2]
    hist = {"bins": [1024, 2048, 4096], "counts": [4, 1]}
    # Bin [lo, hi) with c counts expands to lo + (2j+1)(hi-lo)//(2c), j < c.
    assert lens(write(tmp_path / "h.json", json.dumps(hist))) == [1152, 1408, 1664, 1920, 3072]


def test_histogram_zero_counts_and_low_edge_clamped(tmp_path):
    spec = write(tmp_path / "h.yaml", "bins: [0, 1, 10, 20]\ncounts: [1, 0, 2]\n")
    assert lens(spec) == [1, 12, 17]


def test_yaml_list(tmp_path):
    assert lens(write(tmp_path / "a.yml", "- 5\n- 6\n")) == [5, 6]


def test_yaml_document_with_budget_and_max_len(tmp_path):
    doc = {"schema": "fcp-tune/workload", "schema_version": 1, "name": "mine", "description": "x",
           "global_batch_tokens": 4096, "max_len": 1000, "seqlens": [2500, 10]}
    spec = str(write_yaml(tmp_path / "w.yaml", doc))
    wl = load_workload(spec)
    assert (wl.name, wl.global_batch_tokens, wl.max_len) == ("mine", 4096, 1000)
    assert wl.seqlens == (1000, 1000, 500, 10)
    # Arguments override the document.
    wl2 = load_workload(spec, global_batch_tokens=8192, max_len=2000, long_docs="truncate")
    assert (wl2.global_batch_tokens, wl2.max_len, wl2.seqlens) == (8192, 2000, (2000, 10))


def test_yaml_document_with_histogram(tmp_path):
    doc = {"schema": "fcp-tune/workload", "schema_version": 1, "histogram": {"bins": [8, 16], "counts": [2]}}
    wl = load_workload(str(write_yaml(tmp_path / "w.yaml", doc)))
    assert wl.seqlens == (10, 14) and wl.name == "w"


def test_to_document_round_trips(tmp_path):
    wl = load_workload("uniform:n=50", max_len=4000)
    back = load_workload(str(write_yaml(tmp_path / "rt.yaml", wl.to_document())))
    assert (back.seqlens, back.global_batch_tokens, back.max_len, back.name) == (
        wl.seqlens, wl.global_batch_tokens, wl.max_len, wl.name)
    assert back.seqlens_sha256() == wl.seqlens_sha256()


def test_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.array([4, 5, 6, 7], dtype=np.int32))
    assert lens(str(tmp_path / "a.npy")) == [4, 5, 6, 7]
    np.save(tmp_path / "b.npy", np.array([[4, 5], [6, 7]], dtype=np.int32))  # which axis is documents?
    with pytest.raises(FcpTuneError, match="1-D"):
        lens(str(tmp_path / "b.npy"))


def test_jsonl_token_fields(tmp_path):
    rows = [{"num_tokens": 10, "length": 99}, {"num_tokens": 20, "length": 98}]
    spec = write(tmp_path / "d.jsonl", "\n".join(map(json.dumps, rows)) + "\n\n")
    assert lens(spec) == [10, 20]  # num_tokens is tried first
    assert lens(spec, field="length") == [99, 98]
    spec2 = write(tmp_path / "e.jsonl", '{"n_tokens": 3}\n{"n_tokens": 4}\n')
    assert lens(spec2) == [3, 4]


def test_jsonl_text_field(tmp_path):
    rows = [{"text": "a" * 9, "body": "b" * 4}, {"text": "", "body": "b"}, {"text": "abcd", "body": "bb"}]
    spec = write(tmp_path / "t.jsonl", "\n".join(map(json.dumps, rows)))
    assert lens(spec) == [3, 1]  # ceil(9/4), empty text skipped, ceil(4/4)
    assert lens(spec, chars_per_token=2.0) == [5, 2]
    assert lens(spec, text_field="body", chars_per_token=3.0) == [2, 1, 1]


def test_directory_of_text_files(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.txt", "x" * 10)
    write(tmp_path / "sub" / "b.txt", "y" * 3)
    write(tmp_path / "c.md", "z" * 100)
    write(tmp_path / "empty.txt", "")
    wl = load_workload(str(tmp_path))
    assert wl.seqlens == (3, 1) and wl.name == tmp_path.name  # ceil(10/4), ceil(3/4)
    assert lens(str(tmp_path), glob="*.md", chars_per_token=10) == [10]


# --- built-ins -------------------------------------------------------------------------------


def test_builtins_are_seeded_and_deterministic():
    for name in ("lognormal", "bimodal", "uniform"):
        assert lens(name, seed=3) == lens(name, seed=3)
        assert lens(name, seed=3) != lens(name, seed=4)


def test_builtin_parameters_apply():
    u = lens("uniform:lo=10,hi=20,n=500")
    assert len(u) == 500 and min(u) >= 10 and max(u) <= 20
    ln = lens("lognormal:median=100, sigma=0.5, n=300, min=50, max=200")
    assert len(ln) == 300 and min(ln) >= 50 and max(ln) <= 200
    bi = lens("bimodal:long_frac=0,short_mean=300,sigma=0,n=10")
    assert bi == [300] * 10


def test_lognormal_default_is_a_realistic_long_tail():
    s = load_workload("lognormal").stats()
    assert 1000 <= s.p50 <= 2048 and 32768 <= s.max <= 65536 and s.p99 > 8 * s.p50
    assert s.above[-1].flops_share > 2 * s.above[-1].token_share  # the tail carries the FLOPs


# --- max_len and budget ----------------------------------------------------------------------


def test_split_vs_truncate(tmp_path):
    spec = write(tmp_path / "l.txt", "250\n100\n200\n")
    assert lens(spec, max_len=100) == [100, 100, 50, 100, 100, 100]
    assert lens(spec, max_len=100, long_docs="truncate") == [100, 100, 100]
    wl = load_workload(spec, max_len=100)
    assert wl.max_len == 100 and max(wl.seqlens) <= 100


def test_default_and_explicit_budget(tmp_path):
    spec = write(tmp_path / "l.txt", "100\n30000\n")
    assert load_workload(spec).global_batch_tokens == 4 * 30000
    assert load_workload(spec, max_len=1000).global_batch_tokens == MIN_DEFAULT_BATCH_TOKENS
    assert load_workload(spec, global_batch_tokens=30000).global_batch_tokens == 30000


# --- stats -----------------------------------------------------------------------------------


def test_stats_on_known_list():
    s = compute_stats(list(range(1, 11)), thresholds=[4, 8])
    assert (s.count, s.total_tokens, s.mean, s.min, s.max) == (10, 55, 5.5, 1, 10)
    assert (s.p50, s.p90, s.p99) == (5, 9, 10)  # nearest rank
    t4, t8 = s.above
    assert t4.length == 4 and t4.token_share == pytest.approx(45 / 55)
    assert t4.flops_share == pytest.approx(sum(i * i for i in range(5, 11)) / 385)
    assert t8.token_share == pytest.approx(19 / 55) and t8.flops_share == pytest.approx(181 / 385)
    bins = [(b.lo, b.hi, b.count) for b in s.histogram]
    assert bins == [(1, 2, 1), (2, 4, 2), (4, 8, 4), (8, 16, 3)]
    assert s.histogram[3].token_share == pytest.approx(27 / 55)
    assert sum(b.token_share for b in s.histogram) == pytest.approx(1.0)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["p90"] == 9 and d["above"][0]["length"] == 4 and len(d["histogram"]) == 4


def test_default_thresholds():
    assert default_thresholds(65536) == tuple(1 << k for k in range(8, 16))
    assert default_thresholds(300) == (2, 4, 8, 16, 32, 64, 128, 256)
    assert default_thresholds(1) == ()
    s = Workload("w", (1000, 65536), 65536, None, "t").stats()
    assert [t.length for t in s.above] == list(default_thresholds(65536))


def test_workload_to_dict_is_json():
    d = json.loads(json.dumps(load_workload("uniform:n=20").to_dict()))
    assert d["stats"]["count"] == 20 and d["name"] == "uniform:n=20" and len(d["seqlens_sha256"]) == 64


# --- sampler ---------------------------------------------------------------------------------


def test_sampler_deterministic_in_seed_and_step():
    wl = load_workload("lognormal")
    a, b = BatchSampler(wl, seed=1), BatchSampler(wl, seed=1)
    assert a.batch(5) == b.batch(5)
    assert a.batches(3, start=4) == [b.batch(4), b.batch(5), b.batch(6)]
    assert a.batch(5) != a.batch(6) and a.batch(5) != BatchSampler(wl, seed=2).batch(5)
    for batch in a.batches(20):
        assert sum(batch) <= wl.global_batch_tokens and set(batch) <= set(wl.seqlens)


def test_sampler_fills_budget_and_handles_oversized():
    wl = Workload("c", (1000,), 4500, None, "t")
    assert BatchSampler(wl).batch(0) == [1000] * 4
    big = Workload("b", (5000,), 4500, None, "t")  # constructed directly: one sequence per batch
    assert BatchSampler(big).batch(3) == [5000]
    many = Workload("m", (1,), 1000, None, "t")  # more draws than one numpy chunk
    assert BatchSampler(many).batch(0) == [1] * 1000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=30), st.integers(1, 20000), st.integers(0, 50))
def test_sampler_respects_budget(seqlens, budget, step):
    batch = BatchSampler(Workload("h", tuple(seqlens), budget, None, "t"), seed=7).batch(step)
    assert batch and (len(batch) == 1 or sum(batch) <= budget)
    assert sum(batch) + max(seqlens) > budget  # it stopped only at a draw that would overflow


# --- bad input -------------------------------------------------------------------------------


def expect(match: str, spec: str, **kw) -> None:
    with pytest.raises(FcpTuneError, match=match) as info:
        load_workload(spec, **kw)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path):
    expect("no such file", str(tmp_path / "missing.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    expect("bin.txt: cannot read", str(tmp_path / "bin.txt"))
    expect("bad.yaml: malformed YAML", write(tmp_path / "bad.yaml", "a: [1, 2\n"))
    expect("bad.json: malformed JSON", write(tmp_path / "bad.json", "[1, 2"))
    expect("empty workload", write(tmp_path / "e.txt", "# nothing\n"))
    expect("empty workload", write(tmp_path / "e.json", "[]"))
    expect(r"line 2: '1\.5' is not an integer", write(tmp_path / "f.txt", "1\n1.5\n"))
    expect("line 1: -3 is not a positive", write(tmp_path / "n.txt", "-3\n"))
    expect("item 1: 0 is not a positive", write(tmp_path / "z.json", "[1, 0]"))
    expect("item 0: 'x' is not an integer", write(tmp_path / "s.yaml", "- x\n"))
    expect("item 0: True is not an integer", write(tmp_path / "b.json", "[true]"))
    expect("expected a list of lengths", write(tmp_path / "m.yaml", "foo: 1\n"))


def test_bad_documents(tmp_path):
    base = {"schema": "fcp-tune/workload", "schema_version": 1, "seqlens": [1, 2]}
    cases = [({"schema_version": 2}, "unsupported schema_version 2"),
             ({"schema": "fcp-tune/policy"}, "schema is 'fcp-tune/policy'"),
             ({"max_length": 5}, "unknown field 'max_length'"),
             ({"histogram": {"bins": [1, 2], "counts": [1]}}, "exactly one of"),
             ({"seqlens": [1, -2]}, r"seqlens\[1\]: -2 is not a positive"),
             ({"max_len": 0}, "max_len must be a positive integer"),
             ({"global_batch_tokens": "big"}, "global_batch_tokens must be"),
             ({"name": ""}, "name must be")]
    for i, (change, match) in enumerate(cases):
        expect(match, str(write_yaml(tmp_path / f"d{i}.yaml", {**base, **change})))


def test_bad_histograms(tmp_path):
    cases = [({"bins": [1, 2, 3], "counts": [1]}, "len\\(counts\\) \\+ 1"),
             ({"bins": [1, 4, 2], "counts": [1, 1]}, "increase strictly"),
             ({"bins": [-1, 2], "counts": [1]}, r"bins\[0\] -1"),
             ({"bins": [1, 2], "counts": [-1]}, r"counts\[0\] -1"),
             ({"bins": [1, 2], "counts": [0]}, "empty workload")]
    for i, (hist, match) in enumerate(cases):
        expect(match, write(tmp_path / f"h{i}.json", json.dumps(hist)))


def test_bad_npy(tmp_path):
    np.save(tmp_path / "f.npy", np.array([1.0, 2.0]))
    expect("f.npy: .npy dtype float64 is not an integer", str(tmp_path / "f.npy"))
    np.save(tmp_path / "n.npy", np.array([3, 0], dtype=np.int64))
    expect("element 1: 0 is not a positive", str(tmp_path / "n.npy"))
    expect("cannot read .npy", write(tmp_path / "g.npy", "not numpy"))


def test_bad_jsonl(tmp_path):
    expect("line 2: malformed JSON", write(tmp_path / "a.jsonl", '{"length": 1}\n{oops\n'))
    expect("line 2: no field 'length'", write(tmp_path / "b.jsonl", '{"length": 1}\n{"text": "x"}\n'))
    expect("line 1: expected a JSON object", write(tmp_path / "c.jsonl", "[1]\n"))
    expect("field 'length': 2.5 is not an integer", write(tmp_path / "d.jsonl", '{"length": 2.5}\n'))
    expect("field 'text' is not a string", write(tmp_path / "e.jsonl", '{"text": 3}\n'))
    expect("not both", write(tmp_path / "f.jsonl", '{"text": "x"}\n'), field="a", text_field="b")


def test_bad_directory(tmp_path):
    expect("no files match", str(tmp_path))


def test_bad_builtins_and_options(tmp_path):
    spec = write(tmp_path / "l.txt", "10\n")
    expect("unknown built-in workload 'zipf'", "zipf:a=1")
    expect("not a built-in", "zipf")
    expect("unknown parameter 'mu'", "lognormal:mu=3")
    expect("'sigma' given twice", "lognormal:sigma=1,sigma=2")
    expect("is not key=value", "uniform:lo")
    expect("sigma='abc' is not a number", "lognormal:sigma=abc")
    expect("n='2.5' must be a finite integer", "uniform:n=2.5")
    expect("need 1 <= lo <= hi", "uniform:lo=5,hi=2")
    expect("need median > 0", "lognormal:median=0")
    expect("need 0 <= long_frac <= 1", "bimodal:long_frac=2")
    expect("max_len must be a positive integer, got 0", spec, max_len=0)
    expect("max_len must be a positive integer, got -5", spec, max_len=-5)
    expect("global_batch_tokens must be", spec, global_batch_tokens=0)
    expect("long_docs must be one of", spec, long_docs="drop")
    expect("chars_per_token must be a positive number", spec, chars_per_token=0)
    expect("chars_per_token must be a positive number", spec, chars_per_token=math.nan)
    expect("seed must be", "lognormal", seed=-1)
    expect("smaller than the longest sequence", spec, global_batch_tokens=5)


def test_bad_workload_and_sampler_arguments():
    with pytest.raises(FcpTuneError, match="empty workload"):
        Workload("w", (), 10, None, "t")
    with pytest.raises(FcpTuneError, match=r"seqlens\[0\]: 0 is not a positive"):
        Workload("w", (0,), 10, None, "t")
    with pytest.raises(FcpTuneError, match="exceeds max_len 4"):
        Workload("w", (5,), 10, 4, "t")
    with pytest.raises(FcpTuneError, match="step must be"):
        BatchSampler(Workload("w", (1,), 10, None, "t")).batch(-1)
    with pytest.raises(FcpTuneError, match="threshold 0"):
        compute_stats([1, 2], thresholds=[0])


def test_sample_files_load():
    lt = load_workload(str(REPO / "workloads" / "longtail.txt"))
    assert lt.seqlens == load_workload("lognormal:n=2000", seed=0).seqlens
    bi = load_workload(str(REPO / "workloads" / "bimodal.yaml"))
    assert bi.name == "bimodal-sft" and bi.max_len == 32768 and bi.stats().count == 4200


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    from fcp_tune.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["workload", "show", *args])


def test_cli_show(cli):
    res = cli("lognormal:n=500", "--max-len", "8192", "--seed", "1")
    assert res.exit_code == 0, res.output
    for word in ("p99", "attention FLOPs", "histogram", "> 4K", "8,192"):
        assert word in res.stdout


def test_cli_json(cli, tmp_path):
    spec = write(tmp_path / "t.jsonl", '{"text": "abcdefgh"}\n{"text": "abcd"}\n')
    res = cli(spec, "--chars-per-token", "2", "--global-batch-tokens", "100", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["global_batch_tokens"] == 100 and data["stats"]["max"] == 4 and data["stats"]["count"] == 2


@pytest.mark.parametrize("args, match", [
    (["nope.txt"], "not a built-in"),
    (["lognormal:mu=1"], "unknown parameter 'mu'"),
    (["lognormal", "--max-len", "0"], "max_len must be a positive integer"),
    (["lognormal", "--long-docs", "drop"], "long_docs must be one of"),
])
def test_cli_bad_input_exits_2(cli, args, match):
    res = cli(*args)
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0]
