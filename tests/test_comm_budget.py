"""search and simulate count communicators per rank and can trade step time for fewer of them."""

from __future__ import annotations

import pytest

from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner import candidate_ranges
from fcp_tune.planner.vocab import per_rank_count
from fcp_tune.policy import Policy
from fcp_tune.profile.synthetic import synthetic_profile
from fcp_tune.search.evaluate import Evaluator
from fcp_tune.search.study import SearchConfig, run_search
from fcp_tune.workload import Workload

MODEL = ModelConfig(vocab_size=512, hidden=128, layers=2, heads=4, kv_heads=2, ffn_hidden=352, name="t")
WL = Workload(name="twolevel", seqlens=(60,) * 30 + (200,) * 6 + (900,) * 2, global_batch_tokens=4000,
              max_len=None, source="test")


def test_score_counts_communicators_per_rank():
    cost = CostModel.from_profile(synthetic_profile(world_size=4, model=MODEL), MODEL, world_size=4)
    ev = Evaluator(cost, WL, 4, batches=2, seed=1)
    for policy in (Policy("pow2", 4, 1024), Policy("adaptive", 4, 1024), Policy("adaptive", 4, 1024, max_communicators=2)):
        s = ev.score(policy)
        ranges = [r for r in candidate_ranges(policy, max_seqlen=max(WL.seqlens)) if r[1] > 1]
        assert (s.communicators, s.per_rank_communicators) == (len(ranges), per_rank_count(ranges, 4))
    assert ev.score(Policy("adaptive", 4, 1024, max_communicators=2)).per_rank_communicators <= 2


def test_search_comm_penalty_trades_step_time_for_fewer_communicators():
    prof = synthetic_profile(world_size=4, model=MODEL, beta_Bps=2e9, alpha_s=5e-5)
    common = dict(world_size=4, token_budget=300, trials=40, ranges=3, batches=3, seed=1)
    plain, _, _ = run_search(SearchConfig(**common), prof, WL, MODEL)
    # one communicator per rank costs 10x the step: the fewest communicators win. The 900-token
    # sequences need >= 3 ranks of 300 tokens, so at least one communicator per rank; one suffices.
    frugal, _, _ = run_search(SearchConfig(**common, comm_penalty=10.0), prof, WL, MODEL)
    assert frugal.score.per_rank_communicators == 1 < plain.score.per_rank_communicators
    assert plain.score.step_s < frugal.score.step_s  # ... paid for in step time
    with pytest.raises(FcpTuneError, match="comm_penalty"):
        SearchConfig(world_size=4, token_budget=1024, comm_penalty=-1.0)
