"""The space registry and `get_space`, which also parses settings: `nb201` or `nb201:C=8,N=1,classes=10`."""
from __future__ import annotations

from typing import Any

from hwnas.errors import HwnasError, quote
from hwnas.registries import SPACES

register_space = SPACES.register


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def get_space(spec: str, **params: Any):
    """A space instance from a name or a spec string; settings in `params` override those in the string."""
    import hwnas.spaces  # noqa: F401  (registers the built-in spaces)

    name, _, settings = str(spec).partition(":")
    parsed: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in settings.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise HwnasError(f"malformed space setting {quote(item, 60)} in {quote(spec)}; accepted form: "
                             "name:key=value,key=value")
        parsed[key.strip()] = _parse_value(value.strip())
    return SPACES.get(name.strip())(**{**parsed, **params})
