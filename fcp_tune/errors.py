"""The one exception type fcp-tune raises for bad user input.

It subclasses ``ValueError`` so library callers can catch either; the CLI turns it
(and ``OSError``/YAML errors) into a one-line message and a non-zero exit.
"""


class FcpTuneError(ValueError):
    """Bad input: a malformed file, a wrong schema version, an impossible value."""
