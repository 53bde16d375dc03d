"""Machine profiles: what attention blocks, collectives and token-linear work cost here.

- :mod:`.schema`: the versioned profile file (``schema: fcp-tune/profile``), load/save;
- :mod:`.flops`, :mod:`.collectives`: the FLOP and bandwidth conventions, the alpha-beta fit;
- :mod:`.interp`: grid interpolation and collective look-ups the cost model uses;
- :mod:`.measure` (+ :mod:`.measure_comm`, :mod:`.layer`): ``measure_profile`` (imports torch);
- :mod:`.reference`: reference H100 profiles from public figures; :mod:`.synthetic`: analytic ones.

Importing this package loads only the schema (no torch).
"""

from fcp_tune.profile.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    AttentionPoint,
    CommCurve,
    CommFit,
    CommSample,
    Extrapolation,
    LinearCost,
    MemoryCost,
    Profile,
    load_profile,
    save_profile,
)

__all__ = [
    "SCHEMA", "SCHEMA_VERSION", "AttentionPoint", "CommCurve", "CommFit", "CommSample", "Extrapolation",
    "LinearCost", "MemoryCost", "Profile", "load_profile", "save_profile",
]
