"""Energy per inference: a hardware counter where one is readable (RAPL here, NVML in nvml.py), else an
analytical estimate from multiply-accumulates and memory traffic, labelled as such."""
from __future__ import annotations

import glob
from abc import ABC, abstractmethod
from pathlib import Path

from hwnas.registry import Registry

ENERGY_METERS: Registry = Registry("energy meter")
register_energy_meter = ENERGY_METERS.register

# Horowitz, "Computing's energy problem" (ISSCC 2014), 45 nm: a 32-bit float multiply 3.7 pJ + add 0.9 pJ, and
# about 10 pJ per 32-bit word from a small on-chip SRAM. A coarse but device-independent, deterministic estimate.
PJ_PER_MAC = 4.6
PJ_PER_BYTE = 10.0 / 4


def analytical_energy_mj(macs: float, traffic_bytes: float) -> float:
    return (macs * PJ_PER_MAC + traffic_bytes * PJ_PER_BYTE) * 1e-9


class EnergyMeter(ABC):
    method: str = ""

    @abstractmethod
    def available(self) -> bool: ...

    def why_unavailable(self) -> str | None:
        return None

    @abstractmethod
    def read_mj(self) -> float:
        """A cumulative energy counter in millijoules; energy of a span is the difference of two reads."""


@register_energy_meter("rapl")
class RaplMeter(EnergyMeter):
    """Intel/AMD RAPL package counters from /sys/class/powercap (whole-package energy, idle included)."""

    method = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        self.zones = [Path(p) for p in sorted(glob.glob(str(Path(root) / "intel-rapl:[0-9]")))]
        self._last: dict[Path, int] = {}
        self._total_uj = 0.0

    def available(self) -> bool:
        return self.why_unavailable() is None

    def why_unavailable(self) -> str | None:
        if not self.zones:
            return "no RAPL zones under /sys/class/powercap (not an Intel/AMD CPU, or a VM/container hides them)"
        try:
            for z in self.zones:
                int((z / "energy_uj").read_text())
        except (OSError, ValueError) as e:
            return f"RAPL counters are not readable ({e.__class__.__name__}: run as root or grant read access)"
        return None

    def read_mj(self) -> float:
        for z in self.zones:
            value = int((z / "energy_uj").read_text())
            last = self._last.get(z)
            if last is not None:
                delta = value - last
                if delta < 0:  # the counter wrapped
                    delta += int((z / "max_energy_range_uj").read_text())
                self._total_uj += delta
            self._last[z] = value
        return self._total_uj / 1e3


def best_meter(names: tuple[str, ...]) -> EnergyMeter | None:
    """The first available meter among `names` (registered), or None."""
    for name in names:
        if name in ENERGY_METERS:
            meter = ENERGY_METERS.get(name)()
            if meter.available():
                return meter
    return None
