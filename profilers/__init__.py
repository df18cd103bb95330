"""Device profilers (installed as hwnas.profilers): backends, timing protocol, energy meters, samplers."""
from hwnas.profilers import onnxruntime, remote, spiking, torch_backend  # noqa: F401  (register backends)
from hwnas.profilers.base import BACKENDS, Backend, available_backends, get_backend, register_backend
from hwnas.profilers.energy import ENERGY_METERS, EnergyMeter, register_energy_meter
from hwnas.profilers.fleet import EXECUTORS, FleetAgent, load_fleet, profile_fleet
from hwnas.profilers.fleet_ray import run_ray  # noqa: F401  (registers the "ray" fleet executor; ray imports lazily)
from hwnas.profilers.layer_lut import layer_lut_predictor, profile_layers
from hwnas.profilers.lookup import lookup_from_profiling
from hwnas.profilers.profile import ProfileSummary, measure_arch, profile_space
from hwnas.profilers.samplers import SAMPLERS, Sampler, register_sampler, sample_archs
from hwnas.profilers.timing import PROTOCOL_NAMES, TimingProtocol

# Optional parts (GPU): each registers itself and reports why it is unavailable instead of failing at import.
for _optional in ("tensorrt", "nvml"):
    try:
        __import__(f"hwnas.profilers.{_optional}")
    except ImportError:
        pass

__all__ = [
    "BACKENDS",
    "ENERGY_METERS",
    "EXECUTORS",
    "PROTOCOL_NAMES",
    "SAMPLERS",
    "Backend",
    "EnergyMeter",
    "FleetAgent",
    "ProfileSummary",
    "Sampler",
    "TimingProtocol",
    "available_backends",
    "get_backend",
    "layer_lut_predictor",
    "load_fleet",
    "lookup_from_profiling",
    "measure_arch",
    "profile_fleet",
    "profile_layers",
    "profile_space",
    "register_backend",
    "register_energy_meter",
    "register_sampler",
    "sample_archs",
]
