"""Policies: degree rules, validation (every bad field named), YAML round trip, shipped examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from fcp_tune.errors import FcpTuneError
from fcp_tune.schemes.layout import tokens_per_rank
from fcp_tune.policy import (
    POLICY_KINDS,
    Policy,
    ceil_pow2,
    load_policy,
    min_degree_for,
    save_policy,
)

STRATEGIES = Path(__file__).resolve().parent.parent / "strategies"


def _doc(**over):
    base = {
        "schema": "fcp-tune/policy",
        "schema_version": 1,
        "kind": "thresholds",
        "world_size": 8,
        "token_budget": 4096,
        "scheme": "allgather",
        "thresholds": [
            {"max_len": 2048, "degree": 1},
            {"max_len": 8192, "degree": 3},
            {"max_len": None, "degree": 8},
        ],
        "metadata": {"source": "test"},
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


# ---------------------------------------------------------------- degrees


def test_ceil_pow2():
    assert [ceil_pow2(n) for n in (0, 1, 2, 3, 4, 5, 8, 9)] == [1, 1, 2, 4, 4, 8, 8, 16]


@pytest.mark.parametrize("budget", [1, 2, 3, 7, 64, 4095, 4096])
def test_min_degree_is_smallest_exact_fit(budget):
    for length in list(range(1, 12 * budget, max(1, budget // 7))) + [12 * budget]:
        d = min_degree_for(length, budget)
        assert d >= -(-length // budget)
        assert max(tokens_per_rank(length, d)) <= budget
        if d > 1:
            assert max(tokens_per_rank(length, d - 1)) > budget


def test_min_degree_even_budget_is_plain_ceiling():
    assert all(min_degree_for(L, 4096) == -(-L // 4096) for L in range(1, 40000, 37))


def test_degree_for_each_kind():
    assert Policy("static", 8, 100, degree=2).degree_for(50) == 2
    assert Policy("static", 8, 100, degree=2).degree_for(250) == 3  # raised to the memory minimum
    assert Policy("pow2", 8, 100).degree_for(250) == 4
    assert Policy("pow2", 8, 100).degree_for(100) == 1
    assert Policy("adaptive", 8, 100).degree_for(250) == 3
    t = Policy("thresholds", 8, 100, boundaries=(100, 300), degrees=(1, 3, 5))
    assert [t.degree_for(L) for L in (1, 100, 101, 300, 301, 800)] == [1, 1, 3, 3, 5, 8]


def test_degree_for_too_long_names_length():
    with pytest.raises(ValueError, match="length 801"):
        Policy("adaptive", 8, 100).degree_for(801)
    with pytest.raises(ValueError, match="power-of-two"):
        Policy("pow2", 6, 100).degree_for(550)  # needs 6 ranks, its power of two is 8


def test_tiny_odd_budget_raises_to_a_degree_that_fits():
    # 3 tokens on 4 ranks of 1 token: zigzag puts 2 on one rank; 6 ranks hold 1 each
    assert max(tokens_per_rank(3, 4)) == 2
    assert Policy("static", 8, 1, degree=4).degree_for(3) == 6
    with pytest.raises(ValueError, match="no larger degree up to 64 fits"):
        Policy("pow2", 64, 1).degree_for(3)  # no power of two fits: must fail, not hang


def test_possible_degrees():
    assert Policy("pow2", 6, 100).possible_degrees() == (1, 2, 4)
    assert Policy("static", 4, 100, degree=2).possible_degrees() == (2, 3, 4)
    t = Policy("thresholds", 8, 100, boundaries=(100, 300), degrees=(1, 3, 5))
    assert t.possible_degrees() == (1, 3, 5, 6, 7, 8)
    assert Policy("adaptive", 3, 100).possible_degrees() == (1, 2, 3)


def test_with_world_size():
    t = Policy("thresholds", 8, 100, boundaries=(100,), degrees=(1, 4), metadata={"a": 1})
    t16 = t.with_world_size(16)
    assert t16.world_size == 16 and t16.degrees == (1, 4) and t16.metadata == {"a": 1}
    with pytest.raises(FcpTuneError, match="degrees"):
        t.with_world_size(2)
    with pytest.raises(FcpTuneError, match="degree"):
        Policy("static", 8, 100, degree=4).with_world_size(3)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"kind": "dynamic"}, "kind"),
        ({"world_size": 0}, "world_size"),
        ({"world_size": 2.5}, "world_size"),
        ({"world_size": True}, "world_size"),
        ({"token_budget": 0}, "token_budget"),
        ({"token_budget": "4096"}, "token_budget"),
        ({"scheme": "nope"}, "scheme"),
        ({"kind": "static"}, "degree"),
        ({"kind": "static", "degree": 0}, "degree"),
        ({"kind": "static", "degree": 9}, "degree"),
        ({"kind": "pow2", "degree": 2}, "degree"),
        ({"boundaries": (100, 100), "degrees": (1, 2, 3)}, "boundaries"),
        ({"boundaries": (0,), "degrees": (1, 2)}, "boundaries"),
        ({"boundaries": (100,), "degrees": (1, 2, 3)}, "degrees"),
        ({"boundaries": (100,), "degrees": (1, 0)}, "degrees"),
        ({"boundaries": (100,), "degrees": (1, 9)}, "degrees"),
        ({"kind": "adaptive", "boundaries": (100,), "degrees": (1, 2)}, "boundaries"),
        ({"metadata": [1, 2]}, "metadata"),
    ],
)
def test_constructor_rejects_bad_fields(kwargs, field):
    args = {"kind": "thresholds", "world_size": 8, "token_budget": 4096, "boundaries": (100,), "degrees": (1, 2)}
    args.update(kwargs)
    if args["kind"] != "thresholds" and "boundaries" not in kwargs:
        args["boundaries"], args["degrees"] = (), ()
    with pytest.raises(FcpTuneError, match=field):
        Policy(**args)


@pytest.mark.parametrize(
    "over, field",
    [
        ({"kind": "nope"}, "kind"),
        ({"kind": ...}, "kind"),
        ({"world_size": 0}, "world_size"),
        ({"world_size": "8"}, "world_size"),
        ({"token_budget": -1}, "token_budget"),
        ({"token_budget": ...}, "token_budget"),
        ({"scheme": 3}, "scheme"),
        ({"extra_key": 1}, "extra_key"),
        ({"thresholds": ...}, "thresholds"),
        ({"thresholds": []}, "thresholds"),
        ({"thresholds": "1:2"}, "thresholds"),
        ({"thresholds": [{"max_len": None, "degree": 1, "x": 2}]}, r"thresholds\[0\]"),
        ({"thresholds": [{"max_len": 10, "degree": 1}]}, r"thresholds\[0\].max_len"),
        ({"thresholds": [{"max_len": None, "degree": "two"}]}, r"thresholds\[0\].degree"),
        ({"thresholds": [{"max_len": "x", "degree": 1}, {"max_len": None, "degree": 2}]}, r"thresholds\[0\].max_len"),
        ({"thresholds": [{"max_len": 900, "degree": 1}, {"max_len": 800, "degree": 2}, {"max_len": None, "degree": 3}]}, "boundaries"),
        ({"thresholds": [{"max_len": 900, "degree": 1}, {"max_len": None, "degree": 9}]}, "degrees"),
        ({"kind": "static", "degree": 2}, "thresholds"),
        ({"kind": "static", "thresholds": ...}, "degree"),
        ({"metadata": "x"}, "metadata"),
        ({"schema": "fcp-tune/profile"}, "schema"),
        ({"schema_version": 2}, "schema_version"),
    ],
)
def test_from_dict_rejects_bad_documents(over, field):
    with pytest.raises(FcpTuneError, match=field) as info:
        Policy.from_dict(_doc(**over), source="p.yaml")
    assert "p.yaml" in str(info.value)


def test_from_dict_rejects_non_mapping():
    with pytest.raises(FcpTuneError, match="mapping"):
        Policy.from_dict([1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_yaml_round_trip(tmp_path, kind):
    extra = {
        "static": {"degree": 3},
        "megatron": {"degree": 4},
        "thresholds": {"boundaries": (1000, 5000), "degrees": (1, 3, 6)},
    }.get(kind, {})
    policy = Policy(kind, 8, 2048, scheme="ring", metadata={"tuned_on": "w.yaml", "pred": [1.5, 2]}, **extra)
    path = save_policy(policy, tmp_path / "sub" / f"{kind}.yaml")
    loaded = load_policy(path)
    assert loaded == policy
    assert dict(loaded.metadata) == {"tuned_on": "w.yaml", "pred": [1.5, 2]}
    assert Policy.from_dict(policy.to_dict()) == policy
    doc = yaml.safe_load(path.read_text())
    assert doc["schema"] == "fcp-tune/policy" and doc["schema_version"] == 1
    assert ("thresholds" in doc) == (kind == "thresholds") and ("degree" in doc) == (kind in ("static", "megatron"))
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_thresholds_yaml_layout(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(_doc()))
    p = load_policy(path)
    assert (p.boundaries, p.degrees) == ((2048, 8192), (1, 3, 8))
    assert p.to_dict()["thresholds"][-1] == {"max_len": None, "degree": 8}


def test_load_policy_errors_name_the_file(tmp_path):
    with pytest.raises(FcpTuneError, match="no such file"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_doc(world_size=-3)))
    with pytest.raises(FcpTuneError, match=r"bad\.yaml.*world_size"):
        load_policy(bad)


def test_metadata_is_copied_and_ignored_by_equality():
    meta = {"a": 1}
    p = Policy("adaptive", 4, 100, metadata=meta)
    meta["a"] = 2
    assert p.metadata == {"a": 1}
    assert p == Policy("adaptive", 4, 100, metadata={"other": True})
    assert hash(p) == hash(Policy("adaptive", 4, 100))


@pytest.mark.parametrize("name", ["static-d2.yaml", "pow2.yaml", "thresholds-example.yaml", "adaptive.yaml"])
def test_example_strategies_load(name):
    policy = load_policy(STRATEGIES / name)
    assert policy.world_size == 4 and policy.token_budget == 4096
    assert policy.kind == {"static-d2.yaml": "static", "pow2.yaml": "pow2"}.get(
        name, "thresholds" if "thresholds" in name else "adaptive"
    )


def test_every_shipped_strategy_loads():
    files = sorted(STRATEGIES.glob("*.yaml"))
    assert files
    for f in files:
        load_policy(f)


@pytest.mark.parametrize("budget", [64, 65, 7])
def test_degrees_for_is_degree_for_of_each_length(budget):
    # The vectorised rule the planners use and the scalar one the policy documents agree,
    # including the odd-budget raises and the first too-long length in the error.
    rng = np.random.default_rng(budget)
    lengths = rng.integers(1, 8 * budget, 300)
    for policy in (
        Policy("megatron", 8, budget, degree=8), Policy("static", 8, budget, degree=3), Policy("pow2", 8, budget),
        Policy("thresholds", 8, budget, boundaries=(budget, 3 * budget), degrees=(1, 5, 7)), Policy("adaptive", 8, budget),
    ):
        one = []
        for length in lengths.tolist():
            try:
                one.append(policy.degree_for(length))
            except ValueError as exc:
                with pytest.raises(ValueError) as batch:
                    policy.degrees_for(lengths)
                assert str(batch.value) == str(exc)  # the first failing length, same message
                break
        else:
            assert policy.degrees_for(lengths).tolist() == one


def test_every_kind_has_a_planner_and_the_cli_names_come_from_the_registry():
    from fcp_tune.planner.api import PLANNERS
    from fcp_tune.policy import KINDS, SPEC_KINDS
    from fcp_tune.policy.kinds import spec_help
    from fcp_tune.policy.specs import baseline_policies

    assert set(PLANNERS) == set(KINDS) == set(POLICY_KINDS)
    assert SPEC_KINDS == ("megatron", "static", "mcore-dynamic", "pow2", "adaptive")  # thresholds needs a file
    assert spec_help() == "megatron[:D], static[:D], mcore-dynamic, pow2, adaptive"
    base = baseline_policies(8, 4096, "allgather", 9000)
    # every Megatron degree a user can run, then static at every degree, Megatron-Core dynamic CP, adaptive
    assert [n for n, _ in base] == ["megatron:4", "megatron:8", "static:4", "static:8", "mcore-dynamic", "adaptive"]
    assert [p.scheme for _, p in base] == ["ring", "ring", "allgather", "allgather", "ring", "allgather"]


def test_spec_policy_builds_each_kind_and_rejects_bad_arguments():
    from fcp_tune.policy.specs import spec_policy

    assert spec_policy("static", 8, 4096, "ring", 9000) == Policy("static", 8, 4096, "ring", degree=4)
    assert spec_policy("static:3", 8, 4096, "ring", 9000).degree == 3
    # megatron pads to 2 cp: 8189 -> 8192 tokens no longer fit 2 x 4095; static keeps degree 2
    assert (spec_policy("megatron", 8, 4095, "allgather", 8189).degree, spec_policy("static", 8, 4095, "allgather", 8189).degree) == (4, 2)
    assert spec_policy("pow2", 8, 4096, "allgather", 9000) == Policy("pow2", 8, 4096)
    with pytest.raises(FcpTuneError, match="takes no argument"):
        spec_policy("pow2:3", 8, 4096, "allgather", 9000)
    with pytest.raises(FcpTuneError, match="must be an integer"):
        spec_policy("static:x", 8, 4096, "allgather", 9000)
    with pytest.raises(FcpTuneError, match="does not fit 8 ranks"):
        spec_policy("static", 8, 4096, "allgather", 40000)
