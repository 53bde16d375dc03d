"""The local launcher's set-up: modules preloaded before the fork, and the world-size bound
checked before any costly preparation."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from fcp_tune.cli import app
from fcp_tune.errors import FcpTuneError
from fcp_tune.launch import check_run_world, run_local
from fcp_tune.limits import max_local_procs

PRELOADED = "colorsys"  # a small stdlib module nothing in fcp_tune imports


def _had_module(rank: int, world: int, name: str) -> bool:
    return name in sys.modules  # asked before this rank imports anything


def test_preload_is_imported_once_in_the_parent_and_inherited_by_every_rank(monkeypatch):
    monkeypatch.delitem(sys.modules, PRELOADED, raising=False)
    assert run_local(_had_module, 2, args=(PRELOADED,), timeout=60) == [False, False]  # negative control
    assert PRELOADED not in sys.modules
    assert run_local(_had_module, 2, args=(PRELOADED,), timeout=60, preload=(PRELOADED,)) == [True, True]
    assert PRELOADED in sys.modules


def test_run_world_is_bounded_locally_and_free_under_torchrun(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    limit = max_local_procs()
    assert check_run_world("nproc", limit) == limit
    with pytest.raises(FcpTuneError, match="nproc must be <= .*torchrun"):
        check_run_world("nproc", limit + 1)
    with pytest.raises(FcpTuneError, match="nproc"):
        check_run_world("nproc", 0)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4096")
    assert check_run_world("nproc", 4096) == 4096


@pytest.mark.parametrize("command", ["run", "validate"])
def test_too_many_local_ranks_fail_before_a_cost_model_is_built(monkeypatch, command):
    from fcp_tune.costmodel import CostModel

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("a cost model was built before the world size was checked")

    monkeypatch.setattr(CostModel, "from_profile", refuse)
    res = CliRunner().invoke(app, [command, "--nproc", "100000"])
    assert res.exit_code != 0
    assert "nproc must be <=" in res.stderr and "cost model was built" not in res.output, res.output
