"""What an agent and its clients agree on: the API version, the routes, tokens and the JSON form of a Measurement.

Shared by the agent (`agent_server`, run on the device) and the `remote` backend (run where the search runs);
neither needs the other's web library.
"""
from __future__ import annotations

import hashlib
import os
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

from hwnas.choices import API_VERSION, DEFAULT_PORT  # noqa: F401  (re-exported)
from hwnas.errors import HwnasError, quote
from hwnas.measurement import Measurement, shape_from_str
from hwnas.profilers.timing import TimingProtocol

#: the oldest agent API this client can use
MIN_AGENT_API = 1
PREFIX = f"/v{API_VERSION}"
#: bounds an agent puts on a requested timing protocol, so one request cannot hold the device for hours
PROTOCOL_LIMITS = {"warmup_runs": 1000, "min_runs": 10000, "max_runs": 10000, "max_seconds": 600.0}


def read_token(path: str | os.PathLike) -> str:
    """The bearer token in `path` (surrounding whitespace dropped); a missing or empty file is one line."""
    p = Path(path).expanduser()
    try:
        token = p.read_text().strip()
    except OSError as e:
        raise HwnasError(f"cannot read the token file {quote(str(path))} ({e.strerror or e}); give a file holding the "
                         "agent's token (`hwnas agent token FILE` writes a new one)") from None
    if not token or len(token.split()) != 1:
        raise HwnasError(f"the token file {quote(str(path))} holds no token (one word, e.g. from `hwnas agent token "
                         "FILE`)")
    return token


def token_is_private(path: str | os.PathLike) -> bool:
    """False when group or others may read the token file (the agent warns, as ssh does for keys)."""
    return not Path(path).expanduser().stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def token_id(token: str) -> str:
    """What a log may say about a token: a short hash, never the token."""
    return "tok:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def protocol_to_dict(protocol: TimingProtocol) -> dict[str, Any]:
    return dict(protocol.__dict__)


def protocol_from_dict(fields: Any) -> TimingProtocol:
    """A TimingProtocol from request JSON: known fields only, numbers within PROTOCOL_LIMITS."""
    if not isinstance(fields, dict):
        raise HwnasError(f"protocol {quote(fields, 80)} is not accepted; give an object of TimingProtocol fields")
    known = set(TimingProtocol.__dataclass_fields__)
    unknown = set(fields) - known
    if unknown:
        raise HwnasError(f"unknown protocol field(s) {', '.join(sorted(map(str, unknown)))[:120]}; accepted: "
                         f"{', '.join(sorted(known))}")
    try:
        values = {k: (float(v) if k in ("target_rel_ci", "max_seconds") else int(v)) for k, v in fields.items()}
    except (TypeError, ValueError):
        raise HwnasError(f"protocol {quote(fields, 120)} holds a value that is not a number") from None
    protocol = TimingProtocol(**values)
    if protocol.min_runs < 1 or protocol.max_runs < protocol.min_runs or protocol.warmup_runs < 0 \
            or not 0 < protocol.max_seconds or not 0 < protocol.target_rel_ci:
        raise HwnasError(f"protocol {quote(fields, 120)} is not accepted: runs must be 1 <= min_runs <= max_runs, "
                         "warmup_runs >= 0, max_seconds and target_rel_ci above 0")
    for name, limit in PROTOCOL_LIMITS.items():
        if getattr(protocol, name) > limit:
            raise HwnasError(f"protocol {name}={getattr(protocol, name)} is above this agent's limit of {limit}")
    return protocol


def measurement_to_json(m: Measurement) -> dict[str, Any]:
    return m.to_dict()


def measurement_from_json(d: Any) -> Measurement:
    """The inverse of Measurement.to_dict(); anything malformed is one line (an agent speaking nonsense)."""
    try:
        fields = dict(d)
        fields["input_shape"] = shape_from_str(fields["input_shape"])
        fields["created_at"] = datetime.fromisoformat(fields["created_at"])
        return Measurement(**{k: fields[k] for k in Measurement.__dataclass_fields__ if k in fields})
    except (TypeError, KeyError, ValueError) as e:
        raise HwnasError(f"the agent answered a malformed measurement ({type(e).__name__}: {str(e)[:120]})") from None
