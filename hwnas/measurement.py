"""What a profiler produces and the store keeps: one measured (device, backend, space, arch, shape, batch)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from hwnas.errors import HwnasError, quote

#: What can be measured, predicted and budgeted, with its unit: the one list every stage checks against.
TARGETS: dict[str, str] = {"latency_ms": "ms", "energy_mj": "mJ"}
#: Words a user may type for a target (`--target latency`), and the target each means.
TARGET_ALIASES: dict[str, str] = {"latency": "latency_ms", "latency_ms": "latency_ms",
                                  "energy": "energy_mj", "energy_mj": "energy_mj"}


def check_target(name: str) -> str:
    """The target a user's word names (`latency` -> `latency_ms`), or a HwnasError listing the accepted ones."""
    try:
        return TARGET_ALIASES[str(name)]
    except KeyError:
        raise HwnasError(f"unknown target {str(name)[:200]!r}; accepted: {', '.join(TARGET_ALIASES)}") from None


def budgets_from(latency_ms: float | None = None, energy_mj: float | None = None) -> dict[str, float]:
    """{target: budget} for the budgets given (None: not given); each must be a finite positive number."""
    out = {}
    for target, value in (("latency_ms", latency_ms), ("energy_mj", energy_mj)):
        if value is None:
            continue
        value = float(value)
        if not np.isfinite(value) or value <= 0:
            raise HwnasError(f"the {target} budget {value!r} is not accepted; give a finite positive number")
        out[target] = value
    return out


def check_value(value: object, where: str = "the value", unit: str = "ms") -> float:
    """A measured value (latency, energy) as a float: a finite number above 0, else a HwnasError saying `where`
    it came from (`"file.csv, line 4: column 'pixel3'"`) and what is accepted."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise HwnasError(f"{where} holds {quote(value)}, not a latency or energy; accepted: a finite number above 0 "
                         f"(in {unit})")
    return number


def check_measurement(m: Measurement) -> Measurement:
    """The values a store accepts: latency (and its spread) finite and above 0 (the spread at least 0), energy
    absent or finite and above 0, runs at least 1. Checked before anything is written, so a NaN from a backend
    or a file never reaches the store (nor leaves an empty device row behind)."""
    where = f"the measurement of {quote(m.arch, 120)} on {quote(m.device, 80)}"
    check_value(m.latency_ms, f"{where}: latency_ms")
    for name in ("latency_p10_ms", "latency_p90_ms", "latency_std_ms"):
        value = getattr(m, name)
        if value is None or not math.isfinite(float(value)) or float(value) < 0:
            raise HwnasError(f"{where}: {name} holds {quote(value)}; accepted: a finite number, 0 or above")
    if m.energy_mj is not None:
        check_value(m.energy_mj, f"{where}: energy_mj", "mJ")
    if int(m.runs) < 1:
        raise HwnasError(f"{where}: runs holds {quote(m.runs)}; accepted: 1 or more")
    return m


def random_inputs(n: int, input_shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Seeded standard-normal float32 inputs of shape (n, *input_shape): what timing and parity checks feed."""
    return np.random.default_rng(seed).standard_normal((int(n), *input_shape)).astype(np.float32)


def shape_to_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def shape_from_str(text: str) -> tuple[int, ...]:
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

    def learnt(self, target: str) -> float | None:
        """The figure a predictor learns for `target`: for latency, the latency at the speed reference's nominal
        speed when the row was timed alternately with one (hwnas.profilers.speed: the machine's drift between rows
        cancels), else the median; other targets as stored."""
        if target == "latency_ms":
            figure = ((self.extra or {}).get("speed_reference") or {}).get("latency_ms")
            return float(figure) if figure else self.latency_ms
        return getattr(self, target)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = shape_to_str(self.input_shape)
        d["created_at"] = self.created_at.isoformat()
        return d
