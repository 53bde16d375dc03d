"""Accuracy of cp_attention against the dense float64 reference over the test suite's cases.

    python benchmarks/attention_accuracy.py

Runs every case of ``fcp_tune.attention.parity.suite_cases(6)`` (group sizes 1-6 and two
offset groups, allgather and ring, causal and not, GQA/MHA, float64/float32/bfloat16) and of
``ulysses_cases(6)`` (every group size 1-6 with head counts it divides) on 6 forked gloo
processes and prints the largest scaled error per dtype and scheme.
"""

from __future__ import annotations

from collections import defaultdict

from fcp_tune.attention.parity import TOLERANCE, run_parity, suite_cases, ulysses_cases


def main() -> None:
    cases = suite_cases(6) + ulysses_cases(6)
    errors = run_parity(cases, 6, timeout=600)
    worst: dict[tuple[str, str], float] = defaultdict(float)
    count: dict[tuple[str, str], int] = defaultdict(int)
    for c, e in zip(cases, errors):
        worst[(c.dtype, c.scheme)] = max(worst[(c.dtype, c.scheme)], e.worst)
        count[(c.dtype, c.scheme)] += 1
    print(f"{len(cases)} cases; error = max |x - ref| / max(1, max |ref|) over out, dq, dk, dv")
    print("| dtype | scheme | cases | worst error | tolerance |")
    print("|---|---|---:|---:|---:|")
    for (dtype, scheme), w in sorted(worst.items()):
        print(f"| {dtype} | {scheme} | {count[(dtype, scheme)]} | {w:.1e} | {TOLERANCE[dtype]:.0e} |")


if __name__ == "__main__":
    main()
