"""The real-text workloads: the tokenisation rule, the split rule, and the bundled files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fcp_tune.workload import load_workload

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_real", ROOT / "workloads" / "make_real.py")
make_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_real)  # type: ignore[union-attr]


def test_tokens_are_words_and_punctuation():
    assert make_real.count_tokens("def f(x): return x+1") == 10  # def f ( x ) : return x + 1
    assert make_real.count_tokens("  \n\t ") == 0
    assert make_real.count_tokens(".TH LS 1") == 4


def test_long_documents_are_split():
    assert make_real.split_long([250, 100, 3], 100) == [100, 100, 50, 100, 3]
    assert make_real.split_long([200], 100) == [100, 100]


def test_bundled_real_workloads_load():
    for name, count in (("python-stdlib", 1763), ("manpages", 19781)):
        wl = load_workload(str(ROOT / "workloads" / f"{name}.yaml"))
        assert wl.name == name and len(wl.seqlens) == count and max(wl.seqlens) <= make_real.MAX_LEN
