"""What a profiler produces and the store keeps: one measured (device, backend, space, arch, shape, batch)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence


def shape_to_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def shape_from_str(text: str) -> tuple[int, ...]:
    from hwnas.errors import HwnasError

    try:
        shape = tuple(int(p) for p in str(text).lower().replace(",", "x").split("x") if p.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise HwnasError(f"malformed input shape {text!r}; accepted: positive sizes joined by 'x', e.g. 3x32x32")
    return shape


@dataclass
class Measurement:
    arch: str  # the space's canonical string
    space: str  # the space spec, e.g. nb201:C=16,N=5,classes=10
    device: str  # device fingerprint id (see hwnas.profilers.fingerprint)
    backend: str
    input_shape: tuple[int, ...]
    batch: int
    latency_ms: float  # median over timed runs
    latency_p10_ms: float
    latency_p90_ms: float
    latency_std_ms: float
    runs: int
    energy_mj: float | None = None  # per inference
    energy_method: str | None = None  # nvml-counter, rapl, analytical-45nm, spike-ops
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = shape_to_str(self.input_shape)
        d["created_at"] = self.created_at.isoformat()
        return d
