"""Stage 3, export: real ONNX files in real ONNX Runtime sessions, checked against PyTorch and measured."""
import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from hwnas.errors import HwnasError
from hwnas.export import (
    ExporterWarning,
    ExportOptions,
    OnnxExport,
    calibrate_batchnorm,
    export_bundle,
    export_onnx,
    file_sha256,
    load_samples,
    load_weights_into,
    read_search_result,
    tensorrt_unavailable,
    validate_bundle,
    verify_hashes,
)
from hwnas.profilers import ENERGY_METERS, TimingProtocol
from hwnas.reporting import Reporter
from hwnas.spaces import get_space
from hwnas.store import Store

SPACE = "nb201:C=4,N=1,classes=10"
SHAPE = (3, 16, 16)
ARCH = "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
NO_PATH = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"  # nothing reaches the cell output
QUICK = TimingProtocol.quick()
DIRECT = ("model", "inputs", "labels", "calibration", "store", "reporter")


def _export(space, arch, out, **kwargs):
    """export_bundle with the options as keywords: those of ExportOptions go into it, the rest stay keywords."""
    direct = {k: kwargs.pop(k) for k in DIRECT if k in kwargs}
    return export_bundle(space, arch, out, ExportOptions(**kwargs), **direct)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "b"
    manifest = _export(SPACE, ARCH, out, input_shape=SHAPE, protocol=QUICK, budgets={"latency_ms": 1e4},
                             predicted={"latency_ms": 0.5, "energy_mj": 0.01})
    return out, manifest


def test_exported_onnx_runs_in_onnxruntime_and_matches_pytorch(bundle):
    out, manifest = bundle
    space = get_space(SPACE)
    net = load_weights_into(space, space.from_string(ARCH), SHAPE, out / "weights.pt")
    x = np.random.default_rng(42).standard_normal((32, *SHAPE)).astype(np.float32)  # not the bundle's inputs
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"] and [o.name for o in sess.get_outputs()] == ["logits"]
    got = sess.run(None, {"input": x})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert got.shape == (32, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)
    # BatchNorm calibrated: the logits depend on the input, so top-1 agreement is a real check
    assert len(np.unique(ref.argmax(1))) > 1
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert manifest["weights"] == {"source": "random init (seed 0)", "batchnorm_calibrated": True}


def test_dynamo_exporter_gives_the_same_network(tmp_path):
    manifest = _export(SPACE, ARCH, tmp_path / "b", input_shape=SHAPE, exporter="dynamo", protocol=QUICK)
    assert manifest["exporter"] == "dynamo" and manifest["exporter_requested"] == "dynamo" and manifest["opset"] >= 18
    assert manifest["exporter_note"] is None
    assert manifest["parity"]["passed"] and manifest["parity"]["random"]["top1_agreement"] == 1.0
    assert validate_bundle(tmp_path / "b", measure=False)["passed"]


def test_batchnorm_calibration_makes_untrained_outputs_input_dependent():
    space = get_space(SPACE)
    torch.manual_seed(0)
    net = space.build(space.from_string(ARCH), SHAPE).eval()
    x = torch.randn(64, *SHAPE)
    with torch.no_grad():
        spread_before = net(x).std(0).mean().item()
        calibrate_batchnorm(net, torch.randn(64, *SHAPE))
        assert not net.training
        spread_after = net(x).std(0).mean().item()
    assert spread_after > 3 * spread_before


def test_manifest_records_hashes_parity_device_and_budgets(bundle):
    out, manifest = bundle
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest, default=str))
    assert manifest["format"] == "hwnas-bundle/1"
    assert manifest["space"] == SPACE and manifest["arch"] == ARCH and manifest["input_shape"] == "3x16x16"
    assert set(manifest["files"]) == {"model.onnx", "weights.pt", "parity.npz"}
    for name, record in manifest["files"].items():
        assert record["sha256"] == file_sha256(out / name) and record["bytes"] == (out / name).stat().st_size
    assert manifest["parity"]["passed"] and manifest["parity"]["random"]["max_abs_error"] < 1e-4
    assert manifest["device"]["backend"] == "onnxruntime-cpu" and manifest["device"]["id"].startswith("cpu-")
    assert "cpu" in manifest["device"]["fingerprint"]
    assert {"torch", "onnx", "onnxruntime", "python"} <= set(manifest["versions"])
    measured = manifest["measured"]
    assert measured["latency_ms"] > 0 and measured["energy_mj"] > 0 and measured["energy_method"]
    error = manifest["prediction_error"]["latency_ms"]
    assert error["error_pct"] == pytest.approx(100 * (0.5 - measured["latency_ms"]) / measured["latency_ms"])
    assert manifest["budget_check"]["latency_ms"] == {"budget": 1e4, "measured": measured["latency_ms"], "passed": True}
    assert manifest["passed"] and manifest["failures"] == []
    assert manifest["tensorrt"] is None and manifest["int8"] is None
    verify_hashes(out)  # does not raise


def test_validate_passes_on_a_fresh_bundle_and_changes_nothing(bundle):
    out, _ = bundle
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    report = validate_bundle(out, protocol=QUICK)
    assert report["passed"], report["failures"]
    assert report["hashes"] == {"model.onnx": "ok", "weights.pt": "ok", "parity.npz": "ok"}
    assert report["parity"]["reference"] == "pytorch (weights.pt)" and report["parity"]["random"]["passed"]
    assert report["device"]["same_as_export"] and report["measured"]["latency_ms"] > 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_altered_onnx_fails_validation_with_the_reason(bundle, tmp_path):
    src, _ = bundle
    out = tmp_path / "b"
    out.mkdir()
    for p in src.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    model = onnx.load(str(out / "model.onnx"))
    bias = next(t for t in model.graph.initializer if len(t.dims) == 1 and t.dims[0] == 10)  # classifier bias
    arr = onnx.numpy_helper.to_array(bias) + 0.5
    bias.CopyFrom(onnx.numpy_helper.from_array(arr, bias.name))
    onnx.save(model, str(out / "model.onnx"))
    report = validate_bundle(out, measure=False)
    assert not report["passed"]
    assert report["hashes"]["model.onnx"] == "changed"
    assert not report["parity"]["random"]["passed"] and report["parity"]["random"]["max_abs_error"] == pytest.approx(0.5, rel=1e-3)
    assert any("model.onnx changed since export" in f for f in report["failures"])
    assert any("ONNX vs PyTorch on random inputs" in f for f in report["failures"])
    with pytest.raises(HwnasError, match="model.onnx changed"):
        verify_hashes(out)


def _copy_bundle(src, out):
    out.mkdir()
    for p in src.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


def _rewrite_manifest(out, **changes):
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.update(changes)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_corrupt_onnx_is_a_hash_failure_reported_before_parsing(bundle, tmp_path):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    (out / "model.onnx").write_bytes(b"\x08\x07garbage" * 50)
    report = validate_bundle(out)
    assert not report["passed"] and report["hashes"]["model.onnx"] == "changed"
    assert report["failures"][0] == "model.onnx changed since export (its SHA-256 differs from manifest.json)"
    assert "is not a valid ONNX model" in report["failures"][1] and report["parity"] is None
    assert report["measured"] is None  # nothing was timed: the file is not the exported one


def test_a_byte_appended_to_the_onnx_file_is_a_hash_mismatch(bundle, tmp_path):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    with open(out / "model.onnx", "ab") as f:
        f.write(b"\x00")
    report = validate_bundle(out, measure=False)
    assert not report["passed"] and report["hashes"]["model.onnx"] == "changed"
    assert report["failures"][0] == "model.onnx changed since export (its SHA-256 differs from manifest.json)"


def test_corrupt_onnx_with_a_matching_hash_is_one_clear_error(bundle, tmp_path):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    (out / "model.onnx").write_bytes(b"\x08\x07garbage" * 50)
    files = json.loads((out / "manifest.json").read_text())["files"]
    files["model.onnx"] = {"sha256": file_sha256(out / "model.onnx"), "bytes": 450}
    _rewrite_manifest(out, files=files)
    with pytest.raises(HwnasError) as e:
        validate_bundle(out)
    assert "is not a valid ONNX model" in str(e.value) and "\n" not in str(e.value)


def test_missing_weights_fail_unless_a_deployed_copy_is_declared(bundle, tmp_path):
    src, _ = bundle
    out = tmp_path / "b"
    out.mkdir()
    for p in src.iterdir():
        if p.name != "weights.pt":
            (out / p.name).write_bytes(p.read_bytes())
    report = validate_bundle(out, measure=False)  # before: PASSED with weights.pt listed and missing
    assert not report["passed"] and report["failures"] == ["weights.pt is missing (listed in manifest.json)"]
    deployed = validate_bundle(out, measure=False, require_weights=False)
    assert deployed["passed"], deployed["failures"]
    assert deployed["parity"]["reference"] == "outputs recorded at export" and deployed["hashes"]["weights.pt"] == "missing"


@pytest.mark.parametrize("name", ["/etc/hostname", "../../x", "../b/model.onnx", "sub/weights.pt", "notes.txt"])
def test_a_manifest_naming_files_outside_the_bundle_is_refused_unhashed(bundle, tmp_path, monkeypatch, name):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    files = json.loads((out / "manifest.json").read_text())["files"]
    files[name] = {"sha256": "0" * 64, "bytes": 1}
    _rewrite_manifest(out, files=files)
    hashed = []
    monkeypatch.setattr("hwnas.export.manifest.file_sha256", lambda p: hashed.append(p) or "0" * 64)
    for call in (lambda: validate_bundle(out, measure=False), lambda: verify_hashes(out)):
        with pytest.raises(HwnasError) as e:
            call()
        assert repr(name) in str(e.value) and "\n" not in str(e.value)
        assert ("outside the bundle folder" if "/" in name else "not a bundle file") in str(e.value)
    assert hashed == []


@pytest.mark.parametrize("tolerances", [{"rtol": "1e-3"}, {"rtol": -1}, {"atol": float("nan")}, {"atol": float("inf")},
                                        {"rtol": None}, {"rtol": True}, "tight", [1e-3]])
def test_bad_tolerances_in_the_manifest_are_one_line(bundle, tmp_path, tolerances):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    _rewrite_manifest(out, tolerances=tolerances)
    with pytest.raises(HwnasError) as e:
        validate_bundle(out, measure=False)
    assert "manifest tolerance" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("rtol, atol", [(float("nan"), None), (-1e-3, None), (None, float("inf")), (None, -1.0)])
def test_bad_tolerances_given_to_validate_are_refused(bundle, rtol, atol):
    with pytest.raises(HwnasError, match=r"tolerance (rtol|atol)=.* is not accepted; give a finite number >= 0"):
        validate_bundle(bundle[0], rtol=rtol, atol=atol, measure=False)


def test_bad_budgets_in_the_manifest_are_one_line(bundle, tmp_path):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    for budgets, words in (({"latency_ms": "fast"}, "the latency_ms budget 'fast' is not accepted"),
                           ({"latency_ms": float("nan")}, "the latency_ms budget nan is not accepted"),
                           ({"latency_us": 3}, "unknown budget 'latency_us'"), ([1, 2], "budgets [1, 2] are malformed")):
        _rewrite_manifest(out, budgets=budgets)
        with pytest.raises(HwnasError) as e:
            validate_bundle(out, measure=False)
        assert words in str(e.value) and "\n" not in str(e.value)


def test_a_backend_that_cannot_run_onnx_is_refused_not_timed_on_pytorch(bundle, tmp_path):
    with pytest.raises(HwnasError) as e:
        validate_bundle(bundle[0], backend="torch-cpu", protocol=QUICK)
    assert "backend 'torch-cpu' runs PyTorch modules, not exported ONNX files" in str(e.value)
    assert "onnxruntime-cpu" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(HwnasError, match="runs PyTorch modules"):
        _export(SPACE, ARCH, tmp_path / "b", input_shape=SHAPE, backend="torch-cpu", protocol=QUICK)
    assert list(tmp_path.iterdir()) == []


def test_validate_times_the_exported_file(bundle, monkeypatch):
    from hwnas.profilers.onnxruntime import OnnxRuntimeCPU

    timed = []
    original = OnnxRuntimeCPU.measure_onnx

    def spy(self, path, *args, **kwargs):
        timed.append(path)
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(OnnxRuntimeCPU, "measure_onnx", spy)
    report = validate_bundle(bundle[0], protocol=QUICK)
    assert timed == [bundle[0] / "model.onnx"] and report["measured"]["latency_ms"] > 0


@pytest.mark.parametrize("recorded, words", [
    ("3x8x8", "manifest input_shape 3x8x8 does not match model.onnx's input 3x16x16"),
    ([1, 16, 16], "manifest input_shape 1x16x16 does not match model.onnx's input 3x16x16"),
    ("3x16", "manifest input_shape 3x16 does not match model.onnx's input 3x16x16"),
    ("[3, 16, 16]", "manifest input_shape '[3, 16, 16]' is malformed"),
    (None, "manifest input_shape None is malformed"),
])
def test_manifest_input_shape_is_checked_against_the_onnx_input(bundle, tmp_path, recorded, words):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["input_shape"] = recorded
    (out / "manifest.json").write_text(json.dumps(manifest))
    for measure in (True, False):  # before: a traceback from ONNX Runtime, or PASSED without measuring
        with pytest.raises(HwnasError) as e:
            validate_bundle(out, measure=measure, protocol=QUICK)
        assert words in str(e.value) and "\n" not in str(e.value)


def test_manifest_input_shape_as_a_list_that_matches_is_read(bundle, tmp_path):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["input_shape"] = list(SHAPE)
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert validate_bundle(out, measure=False)["parity"]["passed"]  # the manifest hash is not recorded: still passes


def test_a_file_that_is_not_a_bundle_is_named_as_such(tmp_path):
    (tmp_path / "all.csv").write_text("arch,latency\n")
    with pytest.raises(HwnasError, match=r"all.csv is not a bundle folder \(written by `hwnas export`\)"):
        validate_bundle(tmp_path / "all.csv")


def test_output_folder_under_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "all.csv").write_text("x\n")
    with pytest.raises(HwnasError) as e:
        _export(SPACE, ARCH, tmp_path / "all.csv" / "b", input_shape=SHAPE, protocol=QUICK)
    assert str(e.value) == f"cannot write {tmp_path / 'all.csv' / 'b'} ({tmp_path / 'all.csv'} is a file, not a folder); " \
                          "give a folder path for --out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.csv"]


def test_arch_index_out_of_range_says_the_range(tmp_path):
    for arch in (-1, "-1", "15625"):
        with pytest.raises(HwnasError, match=r"index (-1|15625) is out of range for nb201"):
            _export(SPACE, arch, tmp_path / "b", input_shape=SHAPE)
    assert list(tmp_path.iterdir()) == []


def test_arch_with_no_input_to_output_path_exports_and_runs(tmp_path):
    manifest = _export(SPACE, NO_PATH, tmp_path / "b", input_shape=SHAPE, protocol=QUICK)
    assert manifest["passed"], manifest["failures"]
    sess = ort.InferenceSession(str(tmp_path / "b" / "model.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": np.random.default_rng(0).standard_normal((4, *SHAPE)).astype(np.float32)})[0]
    assert y.shape == (4, 10) and np.allclose(y, y[0])  # the output cannot depend on the input
    assert manifest["parity"]["random"]["reference_top1_classes"] == 1


def test_budget_failure_is_reported_and_validate_rechecks_with_new_budgets(tmp_path):
    out = tmp_path / "b"
    manifest = _export(SPACE, ARCH, out, input_shape=SHAPE, protocol=QUICK,
                             budgets={"latency_ms": 1e-6, "energy_mj": 1e3})
    assert not manifest["passed"]
    assert manifest["budget_check"]["latency_ms"]["passed"] is False and manifest["budget_check"]["energy_mj"]["passed"]
    assert any(f.startswith("latency_ms: measured") and "over budget 1e-06" in f for f in manifest["failures"])
    assert (out / "model.onnx").is_file()  # written anyway, with the failure in its manifest
    assert not validate_bundle(out, protocol=QUICK)["passed"]
    assert validate_bundle(out, protocol=QUICK, budgets={"latency_ms": 1e4})["passed"]


def _trained_digits_net(space, arch, epochs=4):
    from hwnas.data import load_dataset

    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    net = space.build(arch, data.input_shape)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(data.y_train), generator=g)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), data


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_int8_is_smaller_and_reports_its_accuracy_change(tmp_path, mode):
    space = get_space("nb201:C=8,N=1,classes=10")
    arch = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    net, data = _trained_digits_net(space, arch)
    out = tmp_path / mode
    manifest = _export(space, arch, out, model=net, input_shape=data.input_shape, int8=mode, protocol=QUICK,
                             inputs=data.x_test, labels=data.y_test)
    assert manifest["weights"] == {"source": "given model", "batchnorm_calibrated": False}
    assert manifest["int8"]["mode"] == mode
    assert manifest["files"]["model.int8.onnx"]["bytes"] < 0.6 * manifest["files"]["model.onnx"]["bytes"]
    real = manifest["int8_parity"]["real"]
    assert real["samples"] == min(256, len(data.y_test))
    assert real["accuracy_float"] > 0.7  # the net was trained: accuracy means something
    assert real["accuracy_delta"] == pytest.approx(real["accuracy_int8"] - real["accuracy_float"])
    assert abs(real["accuracy_delta"]) < 0.1 and real["top1_agreement"] > 0.85
    assert manifest["int8_parity"]["accuracy_delta"] == real["accuracy_delta"]
    assert manifest["parity"]["real"]["passed"] and manifest["measured_int8"]["latency_ms"] > 0
    assert validate_bundle(out, measure=False)["int8_parity"]["real"]["accuracy_delta"] == real["accuracy_delta"]


def test_export_stores_the_measurement_when_given_a_store(tmp_path):
    store = Store(tmp_path / "m.db")
    manifest = _export(SPACE, ARCH, tmp_path / "b", input_shape=SHAPE, protocol=QUICK, store=store)
    [m] = store.measurements(space=SPACE, arch=ARCH)
    assert m.latency_ms == manifest["measured"]["latency_ms"] and m.backend == "onnxruntime-cpu"
    assert m.extra["onnx_sha256"] == manifest["files"]["model.onnx"]["sha256"]


@pytest.mark.parametrize("kwargs, words", [
    ({"arch": "|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"}, "unknown operation 'bogus'"),
    ({"int8": "fp4"}, "unknown int8 mode"),
    ({"budgets": {"latency_us": 3}}, "unknown budget 'latency_us'"),
    ({"budgets": {"latency_ms": -1}}, "give a finite positive number"),
    ({"inputs": np.zeros((4, 3, 8, 8), np.float32)}, "accepted: (N, 3, 16, 16)"),
    ({"backend": "nosuch"}, "nosuch"),
    ({"tensorrt": True, "tensorrt_precision": "int8"}, "int8='static' (CLI: --int8 static)"),
])
def test_bad_input_raises_and_writes_nothing(tmp_path, kwargs, words):
    args = {"arch": ARCH, **kwargs}
    with pytest.raises(HwnasError, match=None) as e:
        _export(SPACE, args.pop("arch"), tmp_path / "b", input_shape=SHAPE, protocol=QUICK, **args)
    assert words in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_the_earlier_bundle_as_it_was(bundle, tmp_path):
    src, _ = bundle
    out = tmp_path / "b"
    out.mkdir()
    for p in src.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    before = (out / "manifest.json").read_text()
    with pytest.raises(HwnasError):
        _export(SPACE, ARCH, out, input_shape=SHAPE, calibration=np.zeros((2, 1, 8, 8)), int8=True)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_export_into_a_folder_that_is_not_a_bundle_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(HwnasError, match="is not an hwnas bundle"):
        _export(SPACE, ARCH, tmp_path, input_shape=SHAPE)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# --- GPU parts: real checks on a GPU machine, clear reasons here --------------------------------------------
def test_tensorrt_unavailable_names_what_is_missing(monkeypatch):
    import sys
    import types

    from hwnas.profilers.tensorrt import TensorRTBackend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert tensorrt_unavailable().startswith("torch sees no CUDA GPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    assert tensorrt_unavailable().startswith("tensorrt is not installed")
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    assert tensorrt_unavailable() == ("TensorRT 8.6.1 is installed; hwnas needs TensorRT 10 or newer "
                                      "(name-based tensor API)")
    # the backend (hence `hwnas devices`) reports that same reason
    backend = TensorRTBackend()
    assert backend.available() is False and "TensorRT 8.6.1" in backend.why_unavailable()
    with pytest.raises(HwnasError, match="backend 'tensorrt' is not available here: TensorRT 8.6.1 is installed"):
        backend.require()
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    assert tensorrt_unavailable() is None


def test_the_gpu_extra_asks_for_the_tensorrt_the_code_needs():
    import pathlib
    import re

    pyproject = (pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    gpu = re.search(r"^gpu = \[(.*)\]", pyproject, re.MULTILINE).group(1)
    assert '"tensorrt>=10"' in gpu


def test_nvml_says_why_it_is_unavailable():
    meter = ENERGY_METERS.get("nvml")()
    if meter.available():
        pytest.skip("NVML works here; test_nvml_energy_counter_reads_and_grows covers it")
    assert any(w in meter.why_unavailable() for w in ("pynvml", "NVML", "energy counter"))


def test_tensorrt_requested_without_it_is_skipped_with_the_reason(tmp_path):
    why = tensorrt_unavailable()
    if why is None:
        pytest.skip("TensorRT works here; test_tensorrt_engine_matches_onnx covers it")
    manifest = _export(SPACE, ARCH, tmp_path / "b", input_shape=SHAPE, protocol=QUICK, tensorrt=True)
    assert manifest["passed"] and manifest["tensorrt"] == {"skipped": f"TensorRT is not available here: {why}",
                                                            "precision": "fp16"}
    assert not (tmp_path / "b" / "model.engine").exists()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_matches_onnx(tmp_path, precision):
    why = tensorrt_unavailable()
    if why:
        pytest.skip(f"TensorRT is not available here: {why}")
    manifest = _export(SPACE, ARCH, tmp_path / "b", input_shape=SHAPE, protocol=QUICK, tensorrt=True,
                             tensorrt_precision=precision, int8="static" if precision == "int8" else False,
                             backend="tensorrt")
    assert manifest["tensorrt"]["precision"] == precision and (tmp_path / "b" / "model.engine").is_file()
    trt = manifest["tensorrt_parity"]
    assert trt["top1_agreement"] >= (0.75 if precision == "int8" else 1.0)
    if precision != "int8":
        assert trt["passed"]
    assert manifest["measured"]["backend"] == "tensorrt" and manifest["measured"]["latency_ms"] > 0
    assert validate_bundle(tmp_path / "b", protocol=QUICK)["passed"]


def test_nvml_energy_counter_reads_and_grows():
    meter = ENERGY_METERS.get("nvml")()
    if not meter.available():
        pytest.skip(f"NVML energy counter is not available here: {meter.why_unavailable()}")
    import time

    first = meter.read_mj()
    x = torch.randn(2048, 2048, device="cuda")
    started = time.perf_counter()
    while time.perf_counter() - started < 0.5:  # GPU work over several counter refreshes (tens of ms each)
        x = (x @ x).tanh_()
    torch.cuda.synchronize()
    assert meter.read_mj() > first > 0  # strictly more: energy was spent between the two readings


# --- truthful export records ---------------------------------------------------------------------------------
class _Recorder(Reporter):
    def __init__(self):
        self.warnings, self.messages = [], []

    def warning(self, text):
        self.warnings.append(text)

    def message(self, text):
        self.messages.append(text)


def _tiny_net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10))


def test_export_onnx_says_which_exporter_ran_and_surfaces_the_deprecation(tmp_path, monkeypatch):
    import warnings

    monkeypatch.setattr("hwnas.conversion._NOTES_TOLD", set())  # as in a fresh process
    rec = _Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = export_onnx(_tiny_net(), (3, 8, 8), tmp_path / "m.onnx", reporter=rec)
    assert isinstance(done, OnnxExport) and done.path == tmp_path / "m.onnx" and done.path.is_file()
    assert done.exporter == "torchscript" and done.requested == "auto" and done.opset == 17
    assert done.opset == onnx.load(str(done.path)).opset_import[0].version
    if done.note is not None:  # this torch deprecates TorchScript export: one line through the reporter, no warning
        assert rec.warnings == [done.note] and "TorchScript ONNX exporter is deprecated" in done.note
        assert "dynamo" in done.note and "\n" not in done.note
    assert not [w for w in caught if issubclass(w.category, ExporterWarning)]
    if done.note is not None:  # said once per process: the next export records it but says nothing
        again = export_onnx(_tiny_net(), (3, 8, 8), tmp_path / "o.onnx", reporter=rec)
        assert again.note == done.note and rec.warnings == [done.note]
        monkeypatch.setattr("hwnas.conversion._NOTES_TOLD", set())  # without a reporter: an ExporterWarning
        with pytest.warns(ExporterWarning, match="TorchScript ONNX exporter is deprecated"):
            export_onnx(_tiny_net(), (3, 8, 8), tmp_path / "n.onnx")


def test_auto_falling_back_to_dynamo_is_recorded_and_said(tmp_path, monkeypatch):
    def gone(*args, **kwargs):
        raise RuntimeError("torch.onnx.export(dynamo=False) was removed")

    monkeypatch.setattr("hwnas.conversion._export_torchscript", gone)
    rec = _Recorder()
    done = export_onnx(_tiny_net(), (3, 8, 8), tmp_path / "m.onnx", reporter=rec)
    assert done.exporter == "dynamo" and done.requested == "auto" and done.opset >= 18
    assert rec.warnings == [done.note] and "failed (torch.onnx.export(dynamo=False) was removed)" in done.note
    ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
    with pytest.raises(RuntimeError, match="was removed"):  # asked for TorchScript: its failure is not hidden
        export_onnx(_tiny_net(), (3, 8, 8), tmp_path / "t.onnx", exporter="torchscript")


def test_the_manifest_records_the_exporter_that_ran_not_auto(bundle):
    out, manifest = bundle
    assert manifest["exporter"] == "torchscript" and manifest["exporter_requested"] == "auto"
    assert manifest["opset"] == 17 == onnx.load(str(out / "model.onnx")).opset_import[0].version
    assert manifest["exporter_note"] is None or "deprecated" in manifest["exporter_note"]


def test_export_reports_the_exporter_through_the_reporter(tmp_path, monkeypatch):
    monkeypatch.setattr("hwnas.conversion._NOTES_TOLD", set())  # notes are said once per process: as in a fresh one
    rec = _Recorder()
    manifest = _export(SPACE, ARCH, tmp_path / "b", input_shape=SHAPE, protocol=QUICK, reporter=rec)
    assert f"exported model.onnx with the torchscript exporter (opset {manifest['opset']})" in rec.messages
    assert rec.warnings == ([manifest["exporter_note"]] if manifest["exporter_note"] else [])


# --- options and bad export inputs -------------------------------------------------------------------------
def test_export_options_from_a_dict_and_unknown_keys():
    assert ExportOptions.of({"batch": 2}).batch == 2 and ExportOptions.of(None) == ExportOptions()
    with pytest.raises(HwnasError, match="unknown export option\\(s\\) 'input_shap'; accepted: .*input_shape"):
        ExportOptions.of({"input_shap": (3, 8, 8)})


@pytest.mark.parametrize("kwargs, words", [
    ({"rtol": float("nan")}, "tolerance rtol=nan is not accepted"),
    ({"atol": -1.0}, "tolerance atol=-1.0 is not accepted"),
    ({"budgets": {"latency_ms": float("inf")}}, "the latency_ms budget inf is not accepted"),
    ({"batch": 0}, "batch=0 is not accepted"),
    ({"exporter": "onnxscript"}, "unknown ONNX exporter 'onnxscript'"),
    ({"accuracy": "high"}, "accuracy 'high' is not accepted"),
    ({"predicted": {"latency_ms": "fast"}}, "predicted latency_ms='fast' is not accepted"),
    ({"inputs": np.full((2, 3, 16, 16), np.nan, np.float32)}, "inputs hold NaN or infinite values"),
])
def test_more_bad_export_inputs_are_refused_before_writing(tmp_path, kwargs, words):
    with pytest.raises(HwnasError) as e:
        _export(SPACE, ARCH, tmp_path / "b", input_shape=SHAPE, protocol=QUICK, **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_export_asks_the_space_whether_the_network_fits_before_building(tmp_path, monkeypatch):
    from hwnas.spaces import SearchSpace

    asked = []

    def check_fits(self, input_shape=None, batch=1, arch=None):
        asked.append((tuple(input_shape), batch))
        raise HwnasError(f"input shape {'x'.join(map(str, input_shape))} needs more memory than this machine has")

    monkeypatch.setattr(SearchSpace, "check_fits", check_fits)
    monkeypatch.setattr(SearchSpace, "build", lambda *a, **k: pytest.fail("built before check_fits"))
    with pytest.raises(HwnasError, match="input shape 100000x32x32 needs more memory"):
        _export(SPACE, ARCH, tmp_path / "b", input_shape="100000x32x32", protocol=QUICK)
    assert asked and asked[0][0] == (100000, 32, 32)
    assert list(tmp_path.iterdir()) == []


# --- the library loaders the command uses --------------------------------------------------------------------
def test_read_search_result(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"result": {"arch": ARCH, "space": SPACE, "budgets": {"latency_ms": 2.0}}}))
    assert read_search_result(f)["budgets"] == {"latency_ms": 2.0}
    for content, words in (("{", "is not valid JSON"), ('{"strategy": "darts"}', "has no 'arch' string"),
                           (json.dumps({"arch": ARCH, "budgets": [1]}), "budgets [1] is not a mapping"),
                           (json.dumps({"arch": ARCH, "budget_ms": 3, "device": "pixel3"}), "is a tabular")):
        f.write_text(content)
        with pytest.raises(HwnasError, match=re.escape(words)):
            read_search_result(f)
    with pytest.raises(HwnasError, match="no search result at"):
        read_search_result(tmp_path / "missing.json")


def test_load_samples_and_sample_shape():
    from hwnas.export.sources import sample_shape

    x, y = load_samples("digits", limit=10)
    assert x.shape == (10, 1, 8, 8) and y.shape == (10,)
    space = get_space(SPACE)
    assert sample_shape(space, None, x) == (1, 8, 8) and sample_shape(space, "3x16x16") == (3, 16, 16)
    with pytest.raises(HwnasError, match="--dataset digits has samples of shape 1x8x8, the input shape is 3x16x16"):
        sample_shape(space, (3, 16, 16), x, "--dataset digits")


# --- layers --------------------------------------------------------------------------------------------------
def test_profilers_and_export_do_not_import_each_other_nor_the_command_layer():
    import subprocess
    import sys

    code = """import sys
def loaded():
    return sorted(m for m in sys.modules if m.startswith(('hwnas.export', 'hwnas.commands')) or m == 'hwnas.cli')
import hwnas.profilers
print(' '.join(loaded()) or '-')
import hwnas.export
print(' '.join(loaded()))
"""
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    after_profilers, after_export = r.stdout.splitlines()
    assert after_profilers == "-"  # the profilers (and the conversion below them) load nothing of export
    assert after_export and all(m.startswith("hwnas.export") for m in after_export.split())


def test_an_interrupted_export_leaves_the_earlier_bundle_and_no_partial_folder(bundle, tmp_path, monkeypatch):
    out = _copy_bundle(bundle[0], tmp_path / "b")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hwnas.export.bundle.export_onnx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _export(SPACE, ARCH, out, input_shape=SHAPE, protocol=QUICK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
