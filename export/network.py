"""The PyTorch side of a bundle: the network with its weights, BatchNorm calibration, parity inputs and the
reference outputs recorded with them, and running ONNX files for parity."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError

#: real samples kept in parity.npz (and used to check int8 accuracy) at most
MAX_REAL_SAMPLES = 256
PARITY_KINDS = ("random", "smooth", "real")
#: samples per forward pass when BatchNorm statistics are calibrated
CALIBRATION_BATCH = 16
#: random samples BatchNorm statistics are calibrated on when no real ones are given
CALIBRATION_SAMPLES = 64


@contextlib.contextmanager
def torch_threads(n: int):
    """PyTorch on `n` threads for the block: the reference runs here are tiny, and on a busy machine torch's
    default (every core) is over ten times slower than one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def one_torch_thread(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch_threads(1):
            return fn(*args, **kwargs)

    return wrapper


def calibrate_batchnorm(net: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = CALIBRATION_BATCH) -> nn.Module:
    """Set every BatchNorm's running statistics to their average over `x` in batches of `batch_size` (forward
    passes in train mode, no gradients), then return the net in eval mode. Untrained networks keep BatchNorm's
    initial statistics (mean 0, variance 1), under which NB201 cells shrink the signal until the logits barely
    depend on the input."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return net.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    net.train()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            net(x[start : start + batch_size])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return net.eval()


def load_weights_into(space, arch, shape, weights_path: str | Path) -> nn.Module:
    """`space.build(arch, shape)` with weights from a torch.save'd state_dict; errors are one HwnasError."""
    p = Path(weights_path)
    if not p.is_file():
        raise HwnasError(f"no weights file at {weights_path}; give a state_dict saved with torch.save")
    torch.manual_seed(0)
    net = space.build(arch, shape)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises many types for one meaning: not a state_dict
        raise HwnasError(f"{p} is not a readable PyTorch state_dict ({type(e).__name__}); save one with "
                         "torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise HwnasError(f"{p} holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise HwnasError(f"{weights_path} does not fit {space.to_string(arch)} in {space.spec} ({first[:160]})") from None
    return net.eval()


def network_with_weights(space, arch, shape, model: nn.Module | None, seed: int) -> nn.Module:
    """`space.build(arch, shape)` (seeded), with `model`'s weights when given."""
    torch.manual_seed(seed)
    net = space.build(arch, shape)
    if model is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise HwnasError(f"the given model's weights do not fit {space.to_string(arch)} in {space.spec} "
                             f"({first[:160]}); pass the network built by space.build(arch, input_shape)") from None
    return net.eval()


def check_samples(x, shape, what: str) -> np.ndarray | None:
    """Samples (N, *shape) as float32, or None; another shape is one HwnasError."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    data = np.asarray(x, dtype=np.float32)
    if data.ndim != len(shape) + 1 or tuple(data.shape[1:]) != tuple(shape) or len(data) == 0:
        raise HwnasError(f"{what} have shape {tuple(data.shape)}; accepted: (N, {', '.join(map(str, shape))}) with N >= 1")
    if not np.isfinite(data).all():
        raise HwnasError(f"{what} hold NaN or infinite values; give finite samples")
    return data


def check_labels(labels, real) -> np.ndarray | None:
    if labels is None:
        return None
    if real is None:
        raise HwnasError("labels were given without inputs; give both (real samples and their classes)")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.shape != (len(real),) or not np.issubdtype(y.dtype, np.integer):
        raise HwnasError(f"labels have shape {y.shape} and dtype {y.dtype}; accepted: ({len(real)},) integer classes")
    return y.astype(np.int64)


def smooth_inputs(n: int, shape, seed: int) -> np.ndarray | None:
    """Image-like inputs for (C, H, W) shapes: low-frequency noise (drawn at a quarter of the resolution and
    upsampled bilinearly), standardised per sample. Neighbouring pixels correlate as in photographs, which white
    noise lacks; None for other shapes."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    low = np.random.default_rng(seed + 7).standard_normal((int(n), c, max(1, h // 4), max(1, w // 4)))
    x = torch.nn.functional.interpolate(torch.from_numpy(low.astype(np.float32)), size=(h, w), mode="bilinear",
                                        align_corners=False).numpy()
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-6)
    return x.astype(np.float32)


def torch_outputs(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.eval()(torch.from_numpy(x)).numpy()


def write_parity_file(path: Path, net, random_x: np.ndarray, smooth_x, real_x, real_y) -> None:
    arrays = {"random": random_x, "random_reference": torch_outputs(net, random_x)}
    if smooth_x is not None:
        arrays.update(smooth=smooth_x, smooth_reference=torch_outputs(net, smooth_x))
    if real_x is not None:
        arrays.update(real=real_x, real_reference=torch_outputs(net, real_x))
        if real_y is not None:
            arrays["real_labels"] = real_y
    np.savez(path, **arrays)


def read_parity_file(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """{"random" | "smooth" | "real": (inputs, reference outputs, labels or None)}."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {kind: (z[kind], z[f"{kind}_reference"], z.get(f"{kind}_labels", None))
                    for kind in PARITY_KINDS if kind in z}
    except (OSError, ValueError, KeyError) as e:
        raise HwnasError(f"{path} is not a readable parity file ({type(e).__name__}); re-export the bundle") from None


def run_onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of the ONNX file on `x` (ONNX Runtime, CPU, one thread); a file it cannot run is one HwnasError."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HwnasError(f"ONNX Runtime cannot run {path} ({first[:200]}); re-export the bundle") from None


def index_or_none(space, arch) -> int | None:
    try:
        return int(space.index(arch)) if space.size() is not None else None
    except (HwnasError, KeyError):
        return None


def macs_or_none(space, arch, shape) -> float | None:
    try:
        return float(space.flops(arch, shape))
    except Exception:  # noqa: BLE001 - a space without a cost model still exports
        return None


def summary_of(fig: dict[str, Any]) -> dict[str, Any]:
    return {k: fig[k] for k in ("samples", "max_abs_error", "max_rel_error", "top1_agreement")}
