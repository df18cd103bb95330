"""The one user-facing error type: the CLI turns it into one line and exit code 2."""


class HwnasError(ValueError):
    """Bad input or an unusable environment, described in one line: what was wrong and what is accepted."""
