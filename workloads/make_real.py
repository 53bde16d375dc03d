"""Measure document-length workloads from real text on this machine (not synthetic).

    python workloads/make_real.py            # writes workloads/python-stdlib.yaml, workloads/manpages.yaml
    python workloads/make_real.py --check    # recount and compare with the files (exit 1 if they differ)

Two corpora, one document per file:

- ``python-stdlib``: every ``*.py`` file of the running interpreter's standard library
  (``sysconfig.get_paths()["stdlib"]``, ``site-packages`` excluded): source code, with the
  long tail of big modules and test suites;
- ``manpages``: every English manual page under ``/usr/share/man/man[1-9]`` (gzip-compressed
  roff, decompressed; the translated trees ``/usr/share/man/<lang>`` are left out): prose.

Tokenisation rule (documented in docs/WORKLOADS.md): a document's length is the number of
matches of the regular expression ``\\w+|[^\\w\\s]`` in its text decoded as UTF-8 (invalid
bytes replaced): each word and each punctuation mark is a token, about what a BPE
pre-tokeniser splits before merging. Empty documents are skipped. Lengths above
``MAX_LEN`` (131072, the reference cases' context) are split into pieces of ``MAX_LEN``
plus the remainder, as :func:`fcp_tune.workload.load_workload` does with ``long_docs=split``.
The order is the sorted path order, so the output is deterministic for a given machine.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import sysconfig
from pathlib import Path
from typing import Iterable, Iterator

from fcp_tune.fileio import write_yaml
from fcp_tune.workload import SCHEMA, SCHEMA_VERSION, load_workload

TOKEN = re.compile(r"\w+|[^\w\s]")
MAX_LEN = 131072
OUT = Path(__file__).resolve().parent


def count_tokens(text: str) -> int:
    """Words and punctuation marks in ``text`` (the documented tokenisation rule)."""
    return sum(1 for _ in TOKEN.finditer(text))


def split_long(lengths: Iterable[int], max_len: int) -> list[int]:
    """Lengths above ``max_len`` as ``max_len`` pieces plus a remainder."""
    out: list[int] = []
    for n in lengths:
        while n > max_len:
            out.append(max_len)
            n -= max_len
        if n:
            out.append(n)
    return out


def stdlib_files() -> Iterator[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if "site-packages" not in path.parts and path.is_file():
            yield path


def manpage_files() -> Iterator[Path]:
    root = Path("/usr/share/man")
    for section in sorted(root.glob("man[1-9]")):
        for path in sorted(section.iterdir()):
            if path.is_file() and not path.is_symlink():
                yield path


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


CORPORA = {
    "python-stdlib": (stdlib_files, "Python {ver} standard library sources, one document per *.py file"),
    "manpages": (manpage_files, "English manual pages (/usr/share/man/man[1-9], roff source), one document per page"),
}


def measure(name: str) -> tuple[list[int], str]:
    """(lengths, description) of corpus ``name``."""
    files, what = CORPORA[name]
    lengths = [count_tokens(read_text(p)) for p in files()]
    lengths = split_long([n for n in lengths if n > 0], MAX_LEN)
    if not lengths:
        raise SystemExit(f"error: corpus {name}: no documents found on this machine")
    what = what.format(ver=".".join(map(str, sys.version_info[:3])))
    desc = (f"{what}; tokens = matches of \\w+|[^\\w\\s] (words and punctuation marks); documents over "
            f"{MAX_LEN} tokens split; measured by: python workloads/make_real.py")
    return lengths, desc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the written files instead of writing")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    status = 0
    for name in CORPORA:
        lengths, desc = measure(name)
        path = a.out / f"{name}.yaml"
        if a.check:
            same = load_workload(str(path)).seqlens == tuple(lengths)
            print(f"{path}: {'same' if same else 'DIFFERS'} ({len(lengths)} documents)")
            status |= 0 if same else 1
            continue
        write_yaml(path, {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "name": name, "description": desc,
                          "global_batch_tokens": 64 * 16384, "max_len": MAX_LEN, "seqlens": lengths})
        print(f"{path}: {len(lengths)} documents, {sum(lengths)} tokens, max {max(lengths)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
