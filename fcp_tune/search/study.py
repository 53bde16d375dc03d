"""``fcp-tune search``: tune a thresholds policy with Optuna under a calibrated cost model.

The objective is the predicted mean step time of the planner under the candidate policy
over a fixed, seeded set of global batches (:class:`~fcp_tune.search.evaluate.Evaluator`).
The baselines (static at each feasible degree, pow2) are enqueued as the first trials in
their thresholds form, so the search starts from what users run today and its best trial
is never worse than any of them. Memory is an Optuna constraint (``trial.set_constraint``):
a range whose degree cannot hold its longest sequence, or a predicted peak above the
device's memory (the profile's ``hardware``), makes the trial infeasible.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from fcp_tune.costmodel import CostModel
from fcp_tune.errors import FcpTuneError
from fcp_tune.launch import STOP_SIGNALS, Terminated, signal_handlers
from fcp_tune.limits import (MAX_BATCHES, MAX_RANGES, MAX_TRIALS, MAX_WORLD_SIZE, check_float, check_int, check_seed,
                             check_tokens)
from fcp_tune.redact import redact
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.policy import Policy, save_policy
from fcp_tune.policy.specs import baseline_policies
from fcp_tune.profile.schema import Profile
from fcp_tune.schemes import DEFAULT_SCHEME
from fcp_tune.search.attrs import record_trial
from fcp_tune.search.evaluate import Evaluator, Score, Scored, reference_scores, speedups_over
from fcp_tune.search.space import ThresholdSpace
from fcp_tune.schemes import get_scheme
from fcp_tune.search.storage import open_storage
from fcp_tune.workload import Workload

SAMPLERS = ("tpe", "random", "qmc")


@dataclass(frozen=True)
class SearchConfig:
    """What to search; every field ends up in the exported policy's provenance."""

    world_size: int
    token_budget: int
    trials: int = 200
    seed: int = 0
    ranges: int = 5
    batches: int = 8
    scheme: str = DEFAULT_SCHEME
    sampler: str = "tpe"
    storage: Optional[str] = None
    study_name: Optional[str] = None
    profile_sha256: str = ""
    workload_sha256: str = ""
    command: str = ""
    # Trade step time for communicators: the objective is step_s * (1 + comm_penalty * the
    # most communicators one rank needs), e.g. 0.01 = 1 % of step time per communicator.
    comm_penalty: float = 0.0

    def __post_init__(self) -> None:
        check_float("comm_penalty", self.comm_penalty, 0.0)
        check_int("trials", self.trials, 1, MAX_TRIALS)
        check_int("world_size", self.world_size, 1, MAX_WORLD_SIZE)
        check_tokens("token_budget", self.token_budget)
        check_int("ranges", self.ranges, 1, MAX_RANGES)
        check_int("batches", self.batches, 1, MAX_BATCHES)
        check_seed("seed", self.seed)
        if self.sampler not in SAMPLERS:
            raise FcpTuneError(f"unknown sampler {self.sampler!r}; expected one of {', '.join(SAMPLERS)}")
        get_scheme(self.scheme)  # an unknown scheme is named here, before any work
        object.__setattr__(self, "command", redact(self.command))  # provenance is shared: no passwords

    def default_study_name(self) -> str:
        return (
            f"fcp-{self.workload_sha256[:10]}-{self.profile_sha256[:10]}-n{self.world_size}"
            f"-b{self.token_budget}-r{self.ranges}-{self.scheme}"
        )


@dataclass(frozen=True)
class SearchResult:
    policy: Policy
    score: Score
    baselines: tuple[Scored, ...]
    trials_completed: int
    study_name: str
    elapsed_s: float
    speedups: dict[str, float] = field(default_factory=dict)

    @property
    def recommendation(self) -> dict[str, Any] | None:
        """:func:`recommend` for this result (``None`` without an adaptive baseline)."""
        adaptive = next((b.score.step_s for b in self.baselines if b.policy.kind == "adaptive"), None)
        return None if adaptive is None else recommend(self.score.step_s, adaptive)

    def advice(self) -> Optional[str]:
        """What :attr:`recommendation` (thresholds or adaptive) does not say, in plain words:
        that one CP degree for every length beats every thresholds table searched and adaptive
        (beyond the tolerance), or that the searched table is itself a single degree."""
        singles = [b for b in self.baselines if b.policy.kind in ("static", "megatron")]
        best = min(singles, key=lambda b: b.score.step_s, default=None)
        adaptive = min((b.score.step_s for b in self.baselines if b.policy.kind == "adaptive"), default=float("inf"))
        if (best is not None and best.score.step_s < adaptive
                and self.score.step_s / best.score.step_s - 1.0 > ADAPTIVE_TOLERANCE):
            return (f"one CP degree for every length, {best.name}, is predicted "
                    f"{self.score.step_s / best.score.step_s:.2f}x faster than every thresholds table searched "
                    f"and than adaptive: run it with `fcp-tune run --policy {best.name}`")
        if len(set(self.policy.degrees)) == 1:
            return (f"the searched table gives every length degree {self.policy.degrees[0]}: it is static CP "
                    f"(`--policy static:{self.policy.degrees[0]}` runs the same plans' degree)")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendation": self.recommendation,
            "advice": self.advice(),
            "policy": self.policy.to_dict(),
            "predicted": self.score.to_dict(),
            "baselines": {b.name: b.score.to_dict() for b in self.baselines},
            "speedups": self.speedups,
            "trials_completed": self.trials_completed,
            "study_name": self.study_name,
            "elapsed_s": self.elapsed_s,
        }


ADAPTIVE_TOLERANCE = 0.03  # a searched table within 3 % of adaptive's predicted step is worth keeping


def recommend(searched_step_s: float, adaptive_step_s: float, tolerance: float = ADAPTIVE_TOLERANCE) -> dict[str, Any]:
    """Which policy to run: the searched thresholds table, or adaptive when the table is more
    than ``tolerance`` slower by the cost model (no thresholds table can follow the per-batch
    joint schedule when a few long sequences set the critical path). Carries both numbers."""
    gap = searched_step_s / adaptive_step_s - 1.0
    return {"policy": "thresholds" if gap <= tolerance else "adaptive", "searched_step_s": searched_step_s,
            "adaptive_step_s": adaptive_step_s, "searched_vs_adaptive": gap, "tolerance": tolerance}


def make_sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=20)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.QMCSampler(seed=seed, scramble=True)


def _fingerprint(cfg: SearchConfig) -> dict[str, Any]:
    return {
        "profile_sha256": cfg.profile_sha256, "workload_sha256": cfg.workload_sha256,
        "world_size": cfg.world_size, "token_budget": cfg.token_budget, "ranges": cfg.ranges,
        "scheme": cfg.scheme, "batches": cfg.batches, "seed": cfg.seed,
    }


def open_study(cfg: SearchConfig, space: ThresholdSpace) -> Any:
    """Create or resume the study; refuse one made for another profile, workload or space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = cfg.study_name or cfg.default_study_name()
    study = optuna.create_study(
        study_name=name, storage=open_storage(cfg.storage), sampler=make_sampler(cfg.sampler, cfg.seed),
        direction="minimize", load_if_exists=True,
    )
    fp = _fingerprint(cfg)
    stored = study.user_attrs.get("fcp_tune")
    if stored is None:
        study.set_user_attr("fcp_tune", fp)
        for label, params in space.baseline_params():
            study.enqueue_trial(params, user_attrs={"baseline": label}, skip_if_exists=True)
        seeds = space.two_class_params()
        if cfg.trials >= 4 * len(seeds):  # seeds take at most a quarter of the budget
            for label, params in seeds:
                study.enqueue_trial(params, user_attrs={"seed": label}, skip_if_exists=True)
    elif stored != fp:
        diff = sorted(k for k in fp if stored.get(k) != fp[k])
        raise FcpTuneError(
            f"study {name!r} was created for a different search ({', '.join(diff)} differ); "
            f"use another --study-name or the original profile/workload"
        )
    return study


def completed_trials(study: Any) -> int:
    import optuna

    return sum(1 for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE)


# A RUNNING trial started longer ago than this belongs to a worker that was killed: it no
# longer counts against the budget (trials take milliseconds to seconds).
STALE_TRIAL_S = 600.0


def budget_reached(study: Any, trial: Any, trials: int) -> bool:
    """Whether ``trial`` would exceed the study's budget of ``trials`` completed trials.

    Counts what every worker sharing the storage has completed, plus the trials still running
    that started before this one (lower numbers): when two workers race for the last trial,
    the earlier one runs it and the later one stops, so the study ends at ``trials``.
    """
    import datetime as _dt

    import optuna

    state = optuna.trial.TrialState
    now = _dt.datetime.now()
    done = running = 0
    for t in study.get_trials(deepcopy=False, states=(state.COMPLETE, state.RUNNING)):
        if t.state == state.COMPLETE:
            done += 1
        elif t.number < trial.number and t.datetime_start is not None \
                and (now - t.datetime_start).total_seconds() < STALE_TRIAL_S:
            running += 1
    return done + running >= trials


class _StopRequest:
    """SIGINT, SIGTERM or SIGHUP during a search: finish the running trial, stop, then raise
    (``KeyboardInterrupt`` for SIGINT, :class:`~fcp_tune.launch.Terminated` otherwise). Stopping
    between trials never leaves a journal lock or a RUNNING trial behind; a second signal
    raises at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        def handler(signum: int, _frame: Any) -> None:
            if self.signum is not None:
                self._raise(signum)
            self.signum = signum

        with signal_handlers((signal.SIGINT,) + STOP_SIGNALS, handler):
            yield

    @staticmethod
    def _raise(signum: int) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    def raise_if_stopped(self) -> None:
        if self.signum is not None:
            self._raise(self.signum)


def best_feasible(study: Any, evaluator: Any = None, space: Any = None) -> Any:
    """The completed trial with the lowest value among those meeting every constraint; without
    one, an error naming (for the fastest trial) the rank over the device, its GiB and the device's."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    feasible = [t for t in done if not any(v > 0 for v in dict(t.constraints or {}).values())]
    if not feasible:
        why = ""
        if done and evaluator is not None and space is not None:
            fastest = min(done, key=lambda t: (t.value, t.number))
            line = evaluator.score(space.policy(*space.from_params(fastest.params))).over_device()
            why = f"; the fastest: {line}" if line else ""
        raise FcpTuneError("no feasible trial: every candidate exceeded the memory budget or the device's memory "
                           f"(lower --token-budget, or --token-budget auto){why}")
    return min(feasible, key=lambda t: (t.value, t.number))


def memory_violation(budget_violation: float, score: Score) -> float:
    """The trial's memory constraint (> 0: infeasible): ranks missing to hold a range's longest
    sequence in the token budget, or the predicted peak's excess over the device, as a share
    of the device's memory (the larger of the two)."""
    excess = 0.0
    if not score.fits:
        excess = (score.peak_memory_bytes - score.device_memory_bytes) / score.device_memory_bytes  # type: ignore[operator]
    return max(budget_violation, excess)


def run_search(
    cfg: SearchConfig,
    profile: Profile,
    workload: Workload,
    model: ModelConfig,
    on_trial: Optional[Callable[[int, int, float], None]] = None,
) -> tuple[SearchResult, Any, ThresholdSpace]:
    """Search, then score the best policy and the baselines. Returns (result, study, space)."""
    t0 = time.perf_counter()
    cost = CostModel.from_profile(profile, model, scheme=cfg.scheme, world_size=cfg.world_size)
    evaluator = Evaluator(cost, workload, cfg.world_size, batches=cfg.batches, seed=cfg.seed)
    space = ThresholdSpace(
        cfg.world_size, cfg.token_budget, cfg.ranges, min(workload.seqlens), max(workload.seqlens), cfg.scheme
    )
    study = open_study(cfg, space)

    import optuna

    stop = _StopRequest()

    def objective(trial: Any) -> float:
        if stop.signum is not None or budget_reached(study, trial, cfg.trials):
            study.stop()  # another worker's trials filled the budget, or a signal asked to stop
            raise optuna.TrialPruned("not run: the study's trial budget is reached or the search is stopping")
        bounds, degrees = space.suggest(trial)
        score = evaluator.score(space.policy(bounds, degrees))
        trial.set_constraint("memory", memory_violation(space.memory_violation(bounds, degrees), score))
        record_trial(trial, bounds, degrees, score.step_s)  # readable columns in Optuna's own tools
        return score.step_s * (1.0 + cfg.comm_penalty * score.per_rank_communicators)

    def callback(study: Any, trial: Any) -> None:
        done = completed_trials(study)
        if on_trial is not None and trial.state == optuna.trial.TrialState.COMPLETE:
            on_trial(min(done, cfg.trials), cfg.trials, trial.value if trial.value is not None else float("nan"))
        if done >= cfg.trials or stop.signum is not None:  # the budget is shared by every worker
            study.stop()

    remaining = cfg.trials - completed_trials(study)
    if remaining > 0:
        with stop.on_signals():
            study.optimize(objective, n_trials=remaining, callbacks=[callback], catch=())
        stop.raise_if_stopped()
    best = best_feasible(study, evaluator, space)
    bounds, degrees = space.from_params(best.params)
    policy = space.policy(bounds, degrees)
    score, scores, refs, speedups = _score_with_baselines(evaluator, cfg, workload, policy)
    static_name = refs["best_static"][0]
    import optuna

    metadata = {
        "source": "fcp-tune search",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": cfg.command,
        "profile": {"label": profile.label, "sha256": cfg.profile_sha256, "world_size": profile.world_size},
        "workload": {"name": workload.name, "sha256": cfg.workload_sha256, "sequences": len(workload.seqlens)},
        "model": model.to_dict(),
        "search": {
            "optuna": optuna.__version__, "sampler": cfg.sampler, "seed": cfg.seed, "trials": completed_trials(study),
            "ranges": cfg.ranges, "batches": cfg.batches, "study_name": study.study_name,
            "storage": redact(cfg.storage) if cfg.storage else None,
            "best_trial": best.number,
        },
        "predicted": {
            "step_s": score.step_s, "tokens_per_s": score.tokens_per_s, "efficiency": score.efficiency,
            "peak_memory_bytes": score.peak_memory_bytes, "best_static": static_name,
            "megatron": refs["megatron"][0] if "megatron" in refs else None,
            "megatron_smallest": refs["megatron_smallest"][0] if "megatron_smallest" in refs else None,
            "tflops_per_gpu": score.tflops_per_gpu, "mfu": score.mfu, "fits": score.fits,
            "speedup": {k: round(v, 4) for k, v in speedups.items()},
            "baseline_step_s": {b.name: b.score.step_s for b in scores},
        },
    }
    policy = Policy(**{**policy.__dict__, "metadata": metadata})
    result = SearchResult(policy, score, tuple(scores), completed_trials(study), study.study_name,
                          time.perf_counter() - t0, speedups)
    return result, study, space


def _score_with_baselines(evaluator: Evaluator, cfg: SearchConfig, workload: Workload, policy: Policy) -> tuple:
    """``policy``'s score, the baselines' scores, the reference scores and the speedups over them."""
    scores = [Scored(n, p, evaluator.score(p)) for n, p in baseline_policies(
        cfg.world_size, cfg.token_budget, cfg.scheme, max(workload.seqlens))]
    score = evaluator.score(policy)
    refs = reference_scores(scores)
    speedups = {b.name: b.score.step_s / score.step_s for b in scores}
    speedups.update(speedups_over(score.step_s, refs))  # the COMPARISONS keys
    return score, scores, refs, speedups


def score_policy(cfg: SearchConfig, profile: Profile, workload: Workload, model: ModelConfig,
                 policy: Policy) -> SearchResult:
    """A :class:`SearchResult` for an existing ``policy`` (a file ``search`` exported, or any
    policy), scored with the baselines exactly as a search scores its best: no trials run."""
    t0 = time.perf_counter()
    cost = CostModel.from_profile(profile, model, scheme=cfg.scheme, world_size=cfg.world_size)
    evaluator = Evaluator(cost, workload, cfg.world_size, batches=cfg.batches, seed=cfg.seed)
    score, scores, _, speedups = _score_with_baselines(evaluator, cfg, workload, policy)
    searched = dict(policy.metadata).get("search", {}) if isinstance(policy.metadata, dict) else {}
    return SearchResult(policy, score, tuple(scores), int(searched.get("trials", 0)),
                        str(searched.get("study_name", "")), time.perf_counter() - t0, speedups)


def reproduce_command(argv: Optional[list[str]] = None) -> str:
    """The command line that produced this run, for provenance (credentials redacted)."""
    args = sys.argv[1:] if argv is None else argv
    return redact("fcp-tune " + " ".join(shlex.quote(a) for a in args))


def export_policy(result: SearchResult, path: str | Path) -> Path:
    """Write the searched policy (with its provenance) atomically."""
    return save_policy(result.policy, path)
