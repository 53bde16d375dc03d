"""What each trial of a search study records for Optuna's own tools.

Optuna stores the sampled parameters (boundary fractions ``f*`` and degrees ``d*``), which
say little by themselves. Every trial also gets these user attributes, so that
``optuna.load_study(...).trials_dataframe()`` and optuna-dashboard show the policy a trial
stood for and what the cost model predicted for it, as the columns
``user_attrs_thresholds``, ``user_attrs_degrees`` and ``user_attrs_predicted_step_s``.
"""

from __future__ import annotations

from typing import Any, Sequence

ATTR_KEYS = ("thresholds", "degrees", "predicted_step_s")


def trial_attrs(thresholds: Sequence[int], degrees: Sequence[int], predicted_step_s: float) -> dict[str, Any]:
    """The user attributes of one trial: length thresholds (tokens), CP degree per range, seconds."""
    if len(degrees) != len(thresholds) + 1:
        raise ValueError(f"degrees: expected {len(thresholds) + 1} (one per range), got {len(degrees)}")
    return {"thresholds": [int(t) for t in thresholds], "degrees": [int(d) for d in degrees],
            "predicted_step_s": float(predicted_step_s)}


def record_trial(trial: Any, thresholds: Sequence[int], degrees: Sequence[int], predicted_step_s: float) -> None:
    """Set :func:`trial_attrs` on an Optuna ``trial``."""
    for key, value in trial_attrs(thresholds, degrees, predicted_step_s).items():
        trial.set_user_attr(key, value)
