"""Profiles shipped inside the package (``fcp_tune/data/profiles``), found by name.

The bundled files are package data, so they are there in a wheel install as well as in a
checkout (where ``profiles/*.yaml`` are links to them). Wherever a command takes a profile
file it also takes a bundled profile's name, e.g. ``--profile h100-8x-reference``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path



def bundled_profiles_dir() -> Path:
    """The directory holding the bundled profile YAML files."""
    return Path(str(resources.files("fcp_tune") / "data" / "profiles"))


def bundled_profile_names() -> list[str]:
    """Names (file stems) of the bundled profiles, sorted."""
    return sorted(p.stem for p in bundled_profiles_dir().glob("*.yaml"))

