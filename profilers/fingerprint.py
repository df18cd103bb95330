"""Who measured: the hardware, OS and library versions behind a measurement, and a stable id for the device."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from typing import Any

import psutil


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def host_fingerprint() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def device_id(kind: str, hardware: dict[str, Any]) -> str:
    """`cpu-1a2b3c4d5e6f`: a hash of what determines speed (hardware, thread count), not of library versions,
    which are kept per measurement instead."""
    digest = hashlib.sha1(json.dumps(hardware, sort_keys=True).encode()).hexdigest()[:12]
    return f"{kind}-{digest}"
