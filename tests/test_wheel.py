"""fcp-tune works as installed from its wheel, outside the checkout.

Builds the wheel from a copy of the working tree, installs it into a fresh plain venv (no
system site-packages: the checkout's editable install must not shadow the wheel) with the
same torch release as this interpreter's (installed first, so pip takes the CPU build and
does not pull a CUDA one), and runs the commands' defaults from an empty directory:
``run --steps 2``, ``search --trials 5``, ``validate --steps 2`` and ``profile --show``.
Everything they read by default (profile, policy, workload) must come from package data,
and the base install has nothing GPU-only (no pynvml: hardware facts say "unavailable").
Takes about 1.5-2 minutes on 2 cores (most of it pip), so it is marked ``ci``: the
default local ``pytest -q`` leaves it out, CI (``.ci/run``, the README's test command) runs it;
run it alone with ``pytest -q -m ci tests/test_wheel.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_SKIP_COPY = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    ".hypothesis", ".venv", "venv", "strategies", "plots", "report")


def _copy_checkout(dst: Path) -> None:
    """The working tree's files (tracked and untracked, not ignored) under ``dst``; links stay links."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: copy all but build output
        shutil.copytree(REPO, dst, symlinks=True, ignore=_SKIP_COPY)
        return
    for name in filter(None, listed.decode().split("\0")):
        src, out = REPO / name, dst / name
        if not (src.is_file() or src.is_symlink()):
            continue  # deleted in the working tree
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), out)
        else:
            shutil.copy2(src, out)


def _sh(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(venv bin directory, environment) with the freshly built wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", COLUMNS="80", OMP_NUM_THREADS="1")
    src = root / "src"
    _copy_checkout(src)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(src)]
    if importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel"):
        build.insert(4, "--no-build-isolation")  # offline and fast when the build tools are here
    _sh(build, root, env, 300)
    (wheel,) = (root / "dist").glob("fcp_tune-*.whl")
    _sh([sys.executable, "-m", "venv", str(root / "venv")], root, env, 120)
    bindir = root / "venv" / "bin"
    pip = [str(bindir / "python"), "-m", "pip", "install", "-q"]
    _sh(pip + [f"torch=={torch.__version__.split('+')[0]}"], root, env, 900)
    _sh(pip + [str(wheel)], root, env, 600)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return bindir, env


@pytest.mark.slow
@pytest.mark.ci
def test_wheel_runs_the_defaults_outside_the_checkout(installed, tmp_path):
    bindir, env = installed
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _sh([str(bindir / "python"), "-c", "import fcp_tune; print(fcp_tune.__file__)"], work, env, 60)
    assert Path(where.stdout.strip()).is_relative_to(bindir.parent), where.stdout  # the wheel, not the checkout
    exe = str(bindir / "fcp-tune")

    # Nothing GPU-only in the base install: no pynvml, and the hardware facts say so instead of failing.
    nvml = _sh([str(bindir / "python"), "-c", "import importlib.util as u; from fcp_tune.hardware import "
                "collect_hardware as c; print(u.find_spec('pynvml') is None, c()['nvml'])"], work, env, 120)
    assert nvml.stdout.startswith("True unavailable: pynvml not importable"), nvml.stdout

    run = _sh([exe, "run", "--steps", "2"], work, env, 600)
    assert "summary" in run.stdout and "adaptive" in run.stdout, run.stdout

    search = _sh([exe, "search", "--trials", "5"], work, env, 300)
    assert "searched policy" in search.stdout, search.stdout
    assert list((work / "strategies").glob("*.yaml")), "search wrote no policy"

    validate = _sh([exe, "validate", "--steps", "2"], work, env, 600)
    assert "cpu-epyc-2proc-tiny.yaml" in validate.stdout.replace("\n", ""), validate.stdout  # the bundled profile
    assert "overall" in validate.stdout, validate.stdout

    shown = _sh([exe, "profile", "--show", "h100-8x-reference"], work, env, 120)
    assert "reference" in shown.stdout, shown.stdout
    for out in (run, search, validate, shown):
        assert "Traceback" not in out.stderr and "…" not in out.stdout
