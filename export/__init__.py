"""Export (installed as hwnas.export): bundles with ONNX, int8 and TensorRT files, their manifest, validation.

    bundle.py    export_bundle and ExportOptions
    manifest.py  the manifest and the bundle's files: reading, checking, hashes, budgets, tolerances
    validate.py  validate_bundle and the checks shared with export (parity, measurement, budgets)
    network.py   the PyTorch side: weights, BatchNorm calibration, parity inputs and outputs
    sources.py   read_search_result and load_samples (what `hwnas export --from-search --dataset` feeds in)
    quantize.py  int8 with ONNX Runtime; tensorrt.py: engines (their code lives in hwnas.profilers.tensorrt_engine)

TensorRT is imported only when an engine is built or run; `tensorrt_unavailable()` says why it cannot be here."""
from hwnas.conversion import EXPORTERS, ExporterWarning, OnnxExport, export_onnx, load_onnx
from hwnas.export.bundle import ExportOptions, export_bundle
from hwnas.export.manifest import (
    BUNDLE_FILES,
    BUNDLE_FORMAT,
    MANIFEST_FILE,
    bundle_folder,
    check_budgets,
    check_input_shape_matches,
    check_output_dir,
    check_tolerance,
    file_sha256,
    manifest_input_shape,
    read_manifest,
    verify_hashes,
)
from hwnas.export.network import calibrate_batchnorm, load_weights_into
from hwnas.export.quantize import INT8_MODES, quantize_onnx
from hwnas.export.sources import load_samples, read_search_result, sample_shape
from hwnas.export.subnet import finetune, subnet_from_supernet
from hwnas.export.tensorrt import TENSORRT_PRECISIONS, TensorRTRunner, build_engine, tensorrt_unavailable
from hwnas.export.validate import CheckSettings, compare_outputs, onnx_backends, validate_bundle

__all__ = [
    "BUNDLE_FILES", "BUNDLE_FORMAT", "EXPORTERS", "INT8_MODES", "MANIFEST_FILE", "TENSORRT_PRECISIONS", "CheckSettings",
    "ExportOptions", "ExporterWarning", "OnnxExport", "TensorRTRunner", "build_engine", "bundle_folder",
    "calibrate_batchnorm", "check_budgets", "check_input_shape_matches", "check_output_dir", "check_tolerance",
    "compare_outputs", "export_bundle", "export_onnx", "file_sha256", "finetune", "load_onnx", "load_samples",
    "load_weights_into", "manifest_input_shape", "onnx_backends", "quantize_onnx", "read_manifest",
    "read_search_result", "sample_shape", "subnet_from_supernet", "tensorrt_unavailable", "validate_bundle",
    "verify_hashes",
]
