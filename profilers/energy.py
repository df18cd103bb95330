"""Energy per inference, each figure labelled with how it was obtained (`Measurement.energy_method`):

- `nvml-counter` / `nvml-power` (nvml.py): the GPU's total-energy counter, or its power sampled on a thread and
  integrated over time where the GPU has no counter;
- `rapl`: the CPU package's RAPL counters through /sys/class/powercap;
- `analytical-45nm`: an estimate from multiply-accumulates and memory traffic (below), used when no meter is
  readable, so every device has an energy target;
- `spike-ops` (spiking.py): spiking networks, from counted synaptic operations.

Counter meters can subtract the idle power measured just before the span (`EnergyMeter.measure`); the reading
says whether they did and what the idle power was, and backends keep it in `Measurement.extra["energy"]`.
"""
from __future__ import annotations

import glob
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hwnas.registries import ENERGY_METERS

register_energy_meter = ENERGY_METERS.register

# M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, Fig. 1.1.9, 45 nm, 0.9 V:
#   32-bit float multiply 3.7 pJ, 32-bit float add 0.9 pJ  -> one float MAC 4.6 pJ (E_MAC), one add 0.9 pJ (E_AC);
#   64-bit cache read 10 pJ (8 KB SRAM), 20 pJ (32 KB), 100 pJ (1 MB); DRAM 1.3-2.6 nJ per 64-bit access.
#   Traffic is charged 2.5 pJ per byte (10 pJ per 32-bit word: the 8 KB read per word, between the 8 KB and
#   32 KB figures per byte); DRAM is not modelled, so large models are underestimated.
# Spiking-network papers (Spikformer, Zhou et al. ICLR 2023; AutoST, Wang et al. 2023) use the same E_MAC and E_AC.
PJ_PER_MAC = 4.6
PJ_PER_AC = 0.9
PJ_PER_BYTE = 10.0 / 4
#: seconds of idle power measured before a span whose idle power is subtracted
IDLE_SECONDS = 0.3


def analytical_energy_mj(macs: float, traffic_bytes: float) -> float:
    """Energy of one inference at 45 nm (Horowitz, ISSCC 2014): E_MAC per multiply-accumulate plus the on-chip
    traffic per byte; see the constants above. Device-independent and deterministic, a coarse estimate."""
    return (macs * PJ_PER_MAC + traffic_bytes * PJ_PER_BYTE) * 1e-9


@dataclass
class EnergyReading:
    """Energy of one measured span. `energy_mj` is what is reported: `net_mj` (idle subtracted) when that was
    asked for and came out positive, else `gross_mj`; `idle_subtracted` says which."""

    method: str
    gross_mj: float
    seconds: float
    idle_w: float | None = None
    net_mj: float | None = None
    idle_subtracted: bool = False
    note: str = ""

    @property
    def energy_mj(self) -> float:
        return self.net_mj if self.idle_subtracted and self.net_mj is not None else self.gross_mj

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "energy_mj": self.energy_mj}

    def per_run(self, runs: int) -> dict[str, Any]:
        """What a measurement keeps (`extra["energy"]`): the figures per inference over `runs` runs."""
        per = {k: None if v is None else v / runs for k, v in (("gross_mj", self.gross_mj), ("net_mj", self.net_mj))}
        return {"method": self.method, "runs": runs, "span_s": round(self.seconds, 4), "idle_w": self.idle_w,
                "idle_subtracted": self.idle_subtracted, **per, "energy_mj": self.energy_mj / runs,
                **({"note": self.note} if self.note else {})}


class EnergyMeter(ABC):
    method: str = ""
    #: True for meters that read a cumulative counter (`read_mj`); False for estimates (analytical, spike-ops)
    counter: bool = True

    @abstractmethod
    def available(self) -> bool: ...

    def why_unavailable(self) -> str | None:
        return None

    def describe(self) -> str:
        """One line on what the meter measures, for `hwnas devices`."""
        return (self.__doc__ or self.method).strip().splitlines()[0]

    @abstractmethod
    def read_mj(self) -> float:
        """A cumulative energy counter in millijoules; energy of a span is the difference of two reads."""

    def start(self) -> None:
        """Begin reading (a sampling meter starts its thread); counters need nothing."""

    def stop(self) -> None:
        """Stop reading (a sampling meter joins its thread)."""

    def idle_power_w(self, seconds: float = IDLE_SECONDS) -> float:
        """Power drawn while this process does nothing for `seconds` (the device's idle and others' load)."""
        start, t0 = self.read_mj(), time.perf_counter()
        time.sleep(seconds)
        return (self.read_mj() - start) / 1e3 / (time.perf_counter() - t0)

    def measure(self, work: Callable[[], Any], subtract_idle: bool = True) -> tuple[Any, EnergyReading]:
        """Run `work()` and return (its result, the energy of the span). With `subtract_idle` the idle power is
        measured first and its energy over the span taken off; if that leaves nothing positive (the work's draw
        is within the idle's noise) the gross figure is reported and the reading says so."""
        self.start()
        try:
            idle_w = self.idle_power_w() if subtract_idle else None
            start_mj, t0 = self.read_mj(), time.perf_counter()
            result = work()
            gross, seconds = self.read_mj() - start_mj, time.perf_counter() - t0
        finally:
            self.stop()
        reading = EnergyReading(self.method, gross, seconds, idle_w)
        if idle_w is not None:
            reading.net_mj = gross - idle_w * seconds * 1e3
            reading.idle_subtracted = reading.net_mj > 0
            if not reading.idle_subtracted:
                reading.note = "the span's energy is within the idle power's; gross energy reported"
        return result, reading


@register_energy_meter("rapl")
class RaplMeter(EnergyMeter):
    """Intel/AMD RAPL package counters from /sys/class/powercap (whole-package energy, idle included)."""

    method = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        self.root = Path(root)
        self.zones = [Path(p) for p in sorted(glob.glob(str(self.root / "intel-rapl:[0-9]")))]
        self._last: dict[Path, int] = {}
        self._total_uj = 0.0

    def available(self) -> bool:
        return self.why_unavailable() is None

    def why_unavailable(self) -> str | None:
        if not self.root.is_dir():
            return f"{self.root} does not exist (no powercap driver: a VM, a container without /sys, or not Linux)"
        if not self.zones:
            return (f"no RAPL zones under {self.root} (not an Intel/AMD CPU with intel_rapl loaded, or a VM or "
                    "container hides them)")
        try:
            for z in self.zones:
                int((z / "energy_uj").read_text())
        except (OSError, ValueError) as e:
            return (f"RAPL counters are not readable ({e.__class__.__name__}; since Linux 5.10 energy_uj is "
                    "root-only: run as root or grant read access)")
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


@register_energy_meter("analytical")
class AnalyticalMeter(EnergyMeter):
    """Estimate at 45 nm from MACs and memory traffic (Horowitz, ISSCC 2014): works everywhere, measures nothing.

    Figures (M. Horowitz, "Computing's energy problem (and what we can do about it)", IEEE ISSCC 2014, pp. 10-14,
    45 nm at 0.9 V): 32-bit float multiply 3.7 pJ and add 0.9 pJ, so E_MAC = 4.6 pJ (`PJ_PER_MAC`) and
    E_AC = 0.9 pJ (`PJ_PER_AC`); a 64-bit read from an 8 KB SRAM 10 pJ (32 KB: 20 pJ, 1 MB: 100 pJ), here
    2.5 pJ per byte of layer traffic (`PJ_PER_BYTE`); DRAM (1.3-2.6 nJ per 64 bits) is not modelled."""

    method = "analytical-45nm"
    counter = False

    def available(self) -> bool:
        return True

    def read_mj(self) -> float:
        raise NotImplementedError("the analytical meter is an estimate, not a counter: use estimate_mj")

    def estimate_mj(self, macs: float, traffic_bytes: float, batch: int = 1) -> float:
        return batch * analytical_energy_mj(macs, traffic_bytes)


def best_meter(names: tuple[str, ...]) -> EnergyMeter | None:
    """The first available counter meter among `names` (registered), or None."""
    for name in names:
        if name in ENERGY_METERS:
            meter = ENERGY_METERS.get(name)()
            if meter.counter and meter.available():
                return meter
    return None


def meter_report() -> list[dict[str, Any]]:
    """Every registered meter: whether it works here, why not, and what it measures (for `hwnas devices`)."""
    rows = []
    for name in ENERGY_METERS.names():
        meter = ENERGY_METERS.get(name)()
        why = meter.why_unavailable()
        rows.append({"meter": name, "method": meter.method, "available": why is None, "why": why,
                     "kind": "counter" if meter.counter else "estimate", "what": meter.describe()})
    return rows
