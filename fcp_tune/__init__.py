"""fcp-tune: flexible context parallelism for variable-length LLM training.

Sub-packages and modules, one job each:

- ``fcp_tune.attention``: exact context-parallel attention for a group of any size
  (``shard``, ``unshard``, ``cp_attention``).
- ``fcp_tune.cli``: the thin ``fcp-tune`` command line.
"""

__version__ = "0.1.0"
