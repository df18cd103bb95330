"""int8 in the bundle: its latency beside fp32's (saying when int8 is slower) and an accuracy change reported only
for trained weights."""
import torch

from hwnas.commands.export import _int8_latency_rows
from hwnas.data import load_dataset
from hwnas.export import ExportOptions, export_bundle
from hwnas.profilers import TimingProtocol
from hwnas.spaces import get_space

torch.set_num_threads(1)


def test_int8_latency_is_shown_beside_fp32_and_a_slower_int8_says_so():
    slower = _int8_latency_rows({"latency_ms": 0.05}, {"latency_ms": 0.19})
    assert slower[0][0] == "measured int8" and "3.80x fp32: int8 is SLOWER here" in slower[0][1]
    assert "2.00x faster than fp32" in _int8_latency_rows({"latency_ms": 0.2}, {"latency_ms": 0.1})[0][1]
    assert _int8_latency_rows({"latency_ms": 0.2}, {}) == []


def test_untrained_weights_get_no_int8_accuracy_change(tmp_path):
    space = get_space("nb201:C=4,N=1,classes=10")
    data = load_dataset("digits", seed=0, limit=128)
    arch = space.from_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    options = ExportOptions(input_shape=data.input_shape, int8="dynamic", protocol=TimingProtocol.quick())
    manifest = export_bundle(space, arch, tmp_path / "b", options, inputs=data.x_test, labels=data.y_test)
    assert manifest["weights"]["source"].startswith("random init")
    q = manifest["int8_parity"]
    assert q["trained"] is False and q["accuracy_delta"] is None and "accuracy_int8" not in q["real"]
    assert q["real"]["top1_agreement"] >= 0  # agreement with the float model is still reported
