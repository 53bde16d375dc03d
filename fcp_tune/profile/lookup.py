"""Finding a profile, in one place: a file, a bundled profile's name, or the default for a host.

``--profile`` takes a path or a bundled name (:func:`~fcp_tune.profile.bundled.resolve_profile_path`,
re-exported here); without it commands use the newest profile measured on this host
(:func:`default_profile_path`).
:func:`find_profile` does both and reads the file once.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional, Sequence

from fcp_tune.errors import FcpTuneError
from fcp_tune.profile.bundled import bundled_profiles_dir, resolve_profile_path  # noqa: F401 - re-exported
from fcp_tune.profile.schema import Profile, read_profile_file

BUNDLED_CPU_PROFILE = "cpu-epyc-2proc-tiny.yaml"


def default_profile_path(model: str, world_size: int, search: Sequence[Path] | None = None) -> Path:
    """The profile ``fcp-tune validate`` uses when none is named.

    The newest *measured* profile (by its ``created`` stamp) in ``./profiles`` or the
    bundled profiles (package data) that was taken on this host (``hardware.hostname``) for
    ``model`` with at least ``world_size`` ranks; else the bundled
    ``profiles/cpu-epyc-2proc-tiny.yaml``. Unreadable files are skipped.
    """
    dirs = list(search) if search is not None else [Path("profiles"), bundled_profiles_dir()]
    host = socket.gethostname()
    best: tuple[str, Path] | None = None
    seen: set[Path] = set()
    for d in dirs:
        for path in sorted(Path(d).glob("*.yaml")):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                prof = read_profile_file(path)
            except (ValueError, OSError):
                continue
            if (prof.label == "measured" and prof.hardware.get("hostname") == host and prof.model.name == model
                    and prof.world_size >= world_size and (best is None or prof.created > best[0])):
                best = (prof.created, path)
    if best is not None:
        return best[1]
    for d in dirs:
        if (Path(d) / BUNDLED_CPU_PROFILE).is_file():
            return Path(d) / BUNDLED_CPU_PROFILE
    raise FcpTuneError(
        f"--profile: no profile found for model {model!r} on {world_size} ranks; measure one with "
        f"`fcp-tune profile --nproc {world_size} --model {model}` or name a file"
    )


def find_profile(spec: Optional[str], model: str, world_size: int) -> tuple[Path, Profile]:
    """The profile ``spec`` names (a file or a bundled name), else :func:`default_profile_path`'s;
    returns its path (for provenance) and the profile, read once."""
    path = resolve_profile_path(spec) if spec else default_profile_path(model, world_size)
    if spec and not path.is_file():
        raise FcpTuneError(f"--profile: {spec}: no such profile file")
    return path, read_profile_file(path)
