"""Context-parallel degree policies: the :class:`Policy`, its kinds, its degree rules, its files.

Modules, lowest first (no module here imports a higher one, and none imports the planner):

- :mod:`~fcp_tune.policy.degrees`: the degree and padding rules (a leaf: ``min_degree_for``,
  ``min_degrees``, ``fitting_degree``, ``ceil_pow2``, ``pad_to_multiple``, ...), shared by
  the policy, the planners and the cost model;
- :mod:`~fcp_tune.policy.fields`: kind-specific fields (``degree``, ``thresholds``), each
  parsing, checking and writing itself;
- :mod:`~fcp_tune.policy.kinds`: the registry, one :class:`~fcp_tune.policy.kinds.Kind` per kind;
- :mod:`~fcp_tune.policy.core`: :class:`Policy`, :func:`load_policy`, :func:`save_policy`;
- :mod:`~fcp_tune.policy.specs`: policies named on the command line (a file, or
  ``KIND[:D]`` built on a base policy) and the baselines every comparison scores.
"""

from fcp_tune.policy.core import (
    DEFAULT_GPUS_PER_NODE,
    DEFAULT_MAX_COMMUNICATORS,
    POLICY_SCHEMA,
    POLICY_SCHEMA_VERSIONS,
    Policy,
    load_policy,
    save_policy,
)
from fcp_tune.policy.degrees import (
    ceil_pow2,
    dividing_degree,
    fitting_degree,
    min_degree_for,
    min_degrees,
    pad_to_multiple,
    thd_pad_multiple,
)
from fcp_tune.policy.kinds import KINDS, POLICY_KINDS, SPEC_KINDS, Kind, kind_of

__all__ = [
    "DEFAULT_GPUS_PER_NODE", "DEFAULT_MAX_COMMUNICATORS", "KINDS", "Kind", "POLICY_KINDS", "POLICY_SCHEMA",
    "POLICY_SCHEMA_VERSIONS", "Policy", "SPEC_KINDS", "ceil_pow2", "dividing_degree", "fitting_degree", "kind_of",
    "load_policy", "min_degree_for", "min_degrees", "pad_to_multiple", "save_policy", "thd_pad_multiple",
]
