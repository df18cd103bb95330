"""TensorRT engines for bundles: the engine code lives in hwnas.profilers.tensorrt_engine (the TensorRT backend
times engines, and export sits above the profilers); this module keeps the names where export users find them."""
from hwnas.profilers.tensorrt_engine import (
    DEFAULT_WORKSPACE_MB,
    ENGINE_FILE,
    MAX_BATCH,
    TENSORRT_PRECISIONS,
    TensorRTRunner,
    build_engine,
    require_tensorrt,
    tensorrt_unavailable,
    tensorrt_version,
)

__all__ = ["DEFAULT_WORKSPACE_MB", "ENGINE_FILE", "MAX_BATCH", "TENSORRT_PRECISIONS", "TensorRTRunner", "build_engine",
           "require_tensorrt", "tensorrt_unavailable", "tensorrt_version"]
