"""Cost-model fidelity table: measured executor steps vs ``CostModel.predict``, every policy kind.

Runs :func:`fcp_tune.fidelity.validate` on local gloo processes (default 2) with the
tiny model on the bundled long-tail workload (documents split at 2 x 2048 tokens) under
one policy of each kind, interleaved step by step: adaptive (the bundled default),
static (smallest fitting degree), pow2 and a thresholds table (<= 1024 tokens: 1 rank,
longer: 2). Prints a markdown table (policy kind, steps, measured and predicted mean step,
step-time MAPE, busy-time MAPE, bias) and the conditions: the host's load and the CPU
other processes used during the run (measured from ``/proc/stat`` minus this run's own
processes), because the measured side is wall-clock time on a shared machine.

    python benchmarks/validate.py                         # bundled / newest local profile
    python benchmarks/validate.py --wait-quiet 600        # first wait up to 10 min for a quiet host
    python benchmarks/validate.py --profile profiles/mine.yaml --steps 12 --json
    python benchmarks/validate.py --wait-quiet 1800 --fresh-profile profiles/cpu-epyc-2proc-tiny.yaml

``--fresh-profile PATH`` first measures the profile (``fcp-tune profile --nproc N --model
tiny``) into PATH and validates against it right away: calibration and validation then
see the same machine state, which matters on a shared host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fcp_tune.fidelity import TARGET_MAPE_PCT, ValidationReport, default_profile_path, validate  # noqa: E402
from fcp_tune.modelcfg import PRESETS  # noqa: E402
from fcp_tune.policy import Policy, load_policy  # noqa: E402
from fcp_tune.policy.specs import default_policy_path, fit_world, smallest_static_degree  # noqa: E402
from fcp_tune.profile.schema import load_profile  # noqa: E402
from fcp_tune.workload import default_workload_path  # noqa: E402
from fcp_tune.workload import load_workload  # noqa: E402


def cpu_ticks() -> tuple[int, int]:
    """(total, busy) jiffies of the whole host from /proc/stat (0, 0 where unavailable)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    return sum(v), sum(v) - v[3] - v[4]


def own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the ranks)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def others_cores(busy0: int, own0: float, wall0: float) -> float:
    """Average cores other processes used since ``(busy jiffies, own CPU s, monotonic s)`` was taken."""
    _, busy1 = cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return max(0.0, ((busy1 - busy0) / hz - (own_cpu_s() - own0)) / max(1e-9, time.monotonic() - wall0))


def host_busy_cores(seconds: float = 2.0) -> float:
    """Cores busy on the host over ``seconds`` (this process sleeps meanwhile)."""
    t0, b0 = cpu_ticks()
    time.sleep(seconds)
    t1, b1 = cpu_ticks()
    return (os.cpu_count() or 1) * (b1 - b0) / max(1, t1 - t0)


def wait_quiet(limit_s: float, threshold: float = 0.2) -> float:
    """Wait until other work uses < ``threshold`` cores (or ``limit_s`` passes); the last reading."""
    t0 = time.monotonic()
    busy = host_busy_cores()
    while busy >= threshold and time.monotonic() - t0 < limit_s:
        busy = host_busy_cores()
    return busy


def policies(nproc: int, workload: Any) -> tuple[tuple[str, Policy], ...]:
    """One policy of each kind at ``nproc`` ranks, built on the bundled default policy."""
    base = fit_world(load_policy(default_policy_path()), nproc)
    common = dict(world_size=nproc, token_budget=base.token_budget, scheme=base.scheme)
    return (
        ("adaptive", base),
        ("static", Policy(kind="static", degree=smallest_static_degree(base, workload), **common)),
        ("pow2", Policy(kind="pow2", **common)),
        ("thresholds", Policy(kind="thresholds", boundaries=(base.token_budget // 2,),
                              degrees=(1, min(2, nproc)), **common)),
    )


def table(report: ValidationReport) -> str:
    rows = ["| policy kind | steps | measured mean step (s) | predicted mean step (s) | step-time MAPE | "
            "busy-time MAPE | bias |", "|---|---:|---:|---:|---:|---:|---:|"]
    for p in report.policies:
        rows.append(f"| {p.kind} | {len(p.measured)} | {p.measured_mean_s:.3f} | {p.predicted_mean_s:.3f} | "
                    f"{p.step_mape:.1f} % | {p.busy_mape:.1f} % | {p.bias_pct:+.1f} % |")
    rows.append(f"| **all** | {sum(len(p.measured) for p in report.policies)} | | | **{report.step_mape:.1f} %** | "
                f"**{report.busy_mape:.1f} %** | |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=9, help="steps per policy, the first --warmup excluded")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--profile", default=None, help="profile YAML (default: as `fcp-tune validate`)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="first wait up to S seconds until other processes use < 0.2 cores")
    ap.add_argument("--fresh-profile", default=None, metavar="PATH",
                    help="measure a profile into PATH first and validate against it")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    model = PRESETS["tiny"]
    quiet = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else host_busy_cores()
    profile_others = None
    if args.fresh_profile:
        from fcp_tune.profile.measure import measure_profile
        from fcp_tune.profile.schema import save_profile

        t0, b0, own0, w0 = *cpu_ticks(), own_cpu_s(), time.monotonic()
        cmd = f"fcp-tune profile --nproc {args.nproc} --model tiny --out {args.fresh_profile}"
        save_profile(measure_profile(nproc=args.nproc, model=model, command=cmd), args.fresh_profile)
        profile_others = others_cores(b0, own0, w0)
    profile_path = Path(args.fresh_profile or args.profile or default_profile_path(model.name, args.nproc))
    prof = load_profile(profile_path)
    base = fit_world(load_policy(default_policy_path()), args.nproc)
    max_len = (1 << (args.nproc.bit_length() - 1)) * base.token_budget
    wl = load_workload(str(default_workload_path()), max_len=max_len)
    pols = policies(args.nproc, wl)
    t0, b0, own0, w0 = *cpu_ticks(), own_cpu_s(), time.monotonic()
    report = validate(pols, wl, model, prof, steps=args.steps, warmup=args.warmup, seed=args.seed,
                      profile_source=str(profile_path), timeout=1800)
    w1 = time.monotonic()
    others = others_cores(b0, own0, w0)
    command = "python benchmarks/validate.py " + " ".join(sys.argv[1:])
    conditions = {
        "command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(),
        "cores": os.cpu_count(), "profile": str(profile_path), "profile_created": prof.created,
        "workload": f"{wl.name}, max_len {max_len}, {wl.global_batch_tokens} tokens per batch",
        "other_cores_before": round(quiet, 2), "other_cores_during": round(others, 2),
        "other_cores_during_profile": None if profile_others is None else round(profile_others, 2),
        "load_before": round(report.load_before, 2), "load_after": round(report.load_after, 2),
        "run_s": round(w1 - w0, 1),
    }
    if args.json:
        print(json.dumps({"conditions": conditions, **report.to_dict()}, indent=2))
        return
    print(f"`{conditions['command']}` ({conditions['date']}, {conditions['host']}, {conditions['cores']} cores, "
          f"{report.world_size} gloo processes, tiny model, {conditions['workload']}; profile "
          f"{conditions['profile']} created {prof.created})\n")
    print(table(report))
    if profile_others is not None:
        print(f"\nProfile measured into {profile_path} right before (other processes: {profile_others:.2f} cores).")
    print(f"\nConditions: other processes used {conditions['other_cores_before']:.2f} cores before and "
          f"{conditions['other_cores_during']:.2f} cores on average during the {conditions['run_s']:.0f} s run; "
          f"1-min load average {report.load_before:.2f} -> {report.load_after:.2f}. Measured step = slowest "
          f"rank's wall time minus planning; busy = time in the rank's groups. Target: step-time MAPE <= "
          f"{TARGET_MAPE_PCT:.0f} % for every kind: {'met' if report.meets() else 'NOT met'} "
          f"(worst {report.worst_step_mape:.1f} %).")


if __name__ == "__main__":
    main()
