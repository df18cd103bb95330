"""The one user-facing error type: the CLI turns it into one line and exit code 2."""


class HwnasError(ValueError):
    """Bad input or an unusable environment, described in one line: what was wrong and what is accepted."""


#: the most characters of a user's input an error message echoes
QUOTE_LIMIT = 200


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr` of what the user gave, cut to `limit` characters (a 96 KB architecture string is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
