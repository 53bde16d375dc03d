"""Bundled profiles are package data, found by name; the checkout's profiles/ links write through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fcp_tune.errors import FcpTuneError
from fcp_tune.fileio import atomic_write_text
from fcp_tune.profile.bundled import bundled_profile_names, bundled_profiles_dir
from fcp_tune.profile.lookup import resolve_profile_path
from fcp_tune.profile.schema import load_profile

REPO = Path(__file__).resolve().parents[1]


def test_bundled_profiles_live_in_the_package():
    pkg = Path(__import__("fcp_tune").__file__).parent
    assert bundled_profiles_dir().resolve() == (pkg / "data" / "profiles").resolve()
    assert {"cpu-epyc-2proc-tiny", "h100-8x-reference", "h100-64-reference"} <= set(bundled_profile_names())
    assert '"data/profiles/*.yaml"' in (REPO / "pyproject.toml").read_text()  # shipped in the wheel


@pytest.mark.parametrize("spec", ["h100-8x-reference", "h100-8x-reference.yaml"])
def test_a_bundled_name_resolves(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./h100-8x-reference.yaml here
    assert resolve_profile_path(spec) == bundled_profiles_dir() / "h100-8x-reference.yaml"
    assert load_profile(spec).world_size == 8


def test_an_existing_file_wins_and_unknown_names_list_the_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("x: 1\n")
    assert resolve_profile_path("mine.yaml") == Path("mine.yaml")
    with pytest.raises(FcpTuneError, match="bundled: cpu-epyc-2proc-tiny"):
        resolve_profile_path("nope")
    assert resolve_profile_path("sub/nope.yaml") == Path("sub/nope.yaml")  # a path: the reader reports it


def test_atomic_write_goes_through_a_link(tmp_path):
    real = tmp_path / "real.yaml"
    real.write_text("old\n")
    link = tmp_path / "link.yaml"
    os.symlink(real.name, link)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


def test_checkout_profiles_are_links_to_the_package():
    for path in sorted((REPO / "profiles").glob("*.yaml")):
        if path.is_symlink():
            assert path.resolve().parent == bundled_profiles_dir().resolve(), path
