"""Profiles shipped inside the package (``fcp_tune/data/profiles``), found by name.

The bundled files are package data, so they are there in a wheel install as well as in a
checkout (where ``profiles/*.yaml`` are links to them). Wherever a command takes a profile
file it also takes a bundled profile's name, e.g. ``--profile h100-8x-reference``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from fcp_tune.errors import FcpTuneError



def bundled_profiles_dir() -> Path:
    """The directory holding the bundled profile YAML files."""
    return Path(str(resources.files("fcp_tune") / "data" / "profiles"))


def bundled_profile_names() -> list[str]:
    """Names (file stems) of the bundled profiles, sorted."""
    return sorted(p.stem for p in bundled_profiles_dir().glob("*.yaml"))


def resolve_profile_path(spec: str | os.PathLike[str]) -> Path:
    """``spec`` as a file: an existing path as is, else a bundled profile of that name.

    A name is a bare file name with or without ``.yaml``; a missing path with a directory
    part, or an unknown name, is an error that lists the bundled names.
    """
    path = Path(spec)
    if path.exists() or len(path.parts) != 1:
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    candidate = bundled_profiles_dir() / f"{stem}.yaml"
    if candidate.is_file():
        return candidate
    raise FcpTuneError(
        f"profile {str(spec)!r}: no such file and no bundled profile of that name "
        f"(bundled: {', '.join(bundled_profile_names())})"
    )
