"""Credentials out of everything fcp-tune writes: ``scheme://user:password@host`` -> ``scheme://user:***@host``.

A ``--storage`` URL such as ``postgresql://optuna:secret@db/optuna`` reaches the exported
policy's provenance (``metadata.command``, ``metadata.search.storage``), error lines and
logs; each of those goes through :func:`redact` first.
"""

from __future__ import annotations

import re

# scheme://[user][:password]@ -- the password (or a lone token before @) is replaced.
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@'\"]*):(?P<secret>[^\s/@'\"]+)@")
_URL_TOKEN = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<secret>[^\s:/@'\"]+)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|token|secret|api_key|apikey)=)[^&\s'\"]+", re.I)
MASK = "***"


def redact(text: str) -> str:
    """``text`` with passwords, user-info tokens and ``password=``-style query values masked."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}{m['user']}:{MASK}@", text)
    text = _URL_TOKEN.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)
