"""Export (installed as hwnas.export): ONNX export, int8 quantisation, TensorRT engines, bundles and validation.

TensorRT is imported only when an engine is built or run; `tensorrt_unavailable()` says why it cannot be here."""
from hwnas.conversion import EXPORTERS, export_onnx, load_onnx
from hwnas.export.bundle import (
                                 BUNDLE_FORMAT,
                                 MANIFEST_FILE,
                                 calibrate_batchnorm,
                                 check_budgets,
                                 check_input_shape_matches,
                                 check_output_dir,
                                 compare_outputs,
                                 export_bundle,
                                 file_sha256,
                                 load_weights_into,
                                 manifest_input_shape,
                                 read_manifest,
                                 validate_bundle,
                                 verify_hashes,
)
from hwnas.export.quantize import INT8_MODES, quantize_onnx
from hwnas.export.tensorrt import TENSORRT_PRECISIONS, TensorRTRunner, build_engine, tensorrt_unavailable

__all__ = [
    "BUNDLE_FORMAT", "EXPORTERS", "INT8_MODES", "MANIFEST_FILE", "TENSORRT_PRECISIONS", "TensorRTRunner",
    "build_engine", "calibrate_batchnorm", "check_budgets", "check_input_shape_matches", "check_output_dir",
    "compare_outputs", "export_bundle", "export_onnx", "file_sha256", "load_onnx", "load_weights_into",
    "manifest_input_shape", "quantize_onnx", "read_manifest", "tensorrt_unavailable",
    "validate_bundle", "verify_hashes",
]
