"""The README's command blocks run as written, from a fresh copy of the repository.

Every ```bash block of README.md is run with ``bash -e`` in a temporary copy of the tracked
files (what a fresh clone has), one block after the other in the same directory, as a reader
would. Two things are left out, because the test already runs inside them: ``pip install``
commands (the environment is installed; CI installs it with the same commands in
``.ci/run``) and the test-suite command itself (``python3 -m pytest -q ...`` with no test
path, which would recurse). Everything else must exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def is_test_suite(command: str) -> bool:
    """Whether ``command`` runs the whole test suite (pytest with no test path): the test runs inside it."""
    return command.startswith("python3 -m pytest") and "tests/" not in command


def bash_blocks(text: str) -> list[str]:
    """The bodies of the ```bash blocks of a Markdown text, in order."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def runnable(block: str) -> str:
    """``block`` without ``pip install`` steps and without the test-suite command (see the module doc)."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        parts = [p.strip() for p in line.split("&&")]
        parts = [p for p in parts if p and not p.startswith("pip install") and not is_test_suite(p)]
        if parts:
            out.append(" && ".join(parts))
    return "\n".join(out)


def test_blocks_are_found_and_filtered():
    blocks = bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    cleaned = [runnable(b) for b in blocks]
    assert "fcp-tune run" in cleaned[0] and "pip" not in cleaned[0]  # the main job
    assert cleaned[1] == ""  # the test-suite command: the test runs inside it
    assert any("fcp-tune search" in c and "fcp-tune validate" in c for c in cleaned)
    assert runnable("pip install a && pip install -e '.[test]' && fcp-tune x \\\n  --y 1") == "fcp-tune x    --y 1"


def _fresh_copy(dest: Path) -> None:
    """The tracked files of the repository (a fresh clone's content) under ``dest``."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for extra in ("README.md",):  # a README edited but not committed yet is the one under test
        shutil.copy2(ROOT / extra, dest / extra)


@pytest.mark.slow
@pytest.mark.ci
def test_every_readme_bash_block_exits_zero(tmp_path):
    repo = tmp_path / "fcp-tune"
    repo.mkdir()
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    _fresh_copy(repo)
    shims = tmp_path / "bin"  # `fcp-tune` and `python3` of this interpreter, on this copy's code
    shims.mkdir()
    for name, cmd in (("fcp-tune", f'exec "{sys.executable}" -m fcp_tune "$@"'),
                      ("python3", f'exec "{sys.executable}" "$@"')):
        path = shims / name
        path.write_text(f"#!/bin/sh\n{cmd}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(repo)}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    for i, block in enumerate(bash_blocks((repo / "README.md").read_text(encoding="utf-8"))):
        script = runnable(block)
        if not script:
            continue
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"README block {i} failed:\n{script}\n--- stdout\n{proc.stdout[-3000:]}" \
                                     f"\n--- stderr\n{proc.stderr[-3000:]}"
