"""What `export_bundle` is fed from elsewhere: a search result (the JSON of `hwnas search --json`) and real
samples from a dataset. Public so that a notebook does what `hwnas export --from-search --dataset` does."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hwnas.data import load_dataset
from hwnas.errors import HwnasError, quote
from hwnas.files import read_json
from hwnas.measurement import shape_from_str, shape_to_str

#: real samples taken from a dataset's test split at most (parity, int8 calibration and accuracy)
SAMPLE_LIMIT = 256


def read_search_result(path: str | Path) -> dict[str, Any]:
    """The search result at `path` (`hwnas search --json` output, or its "result" member): a dict with at least
    "arch" (a string), and "space", "budgets", "predicted", "test_accuracy" where the search gave them.

    A missing or malformed file is one HwnasError, and so is a `search --tabular` result: its budget and
    accuracy are the published table's (another device, trained weights), so they must not be carried into a
    bundle measured here."""
    result = read_json(path, "search result", "give the JSON written by `hwnas search --json`")
    if isinstance(result, dict) and isinstance(result.get("result"), dict):
        result = result["result"]
    if isinstance(result, dict) and "budgets" not in result and "budget_ms" in result:
        raise HwnasError(
            f"{path} is a tabular (published-table) search result from `hwnas search --tabular`, not a device search "
            f"result: its {result.get('budget_ms')} ms budget is for device {result.get('device')!r} and its accuracy "
            f"is the table's for trained weights; to export that architecture anyway pass --arch "
            + (f"'{result['arch']}' (with --weights and --budget-ms for this device)" if isinstance(result.get("arch"), str)
               else "ARCH; this search found no architecture"))
    if not isinstance(result, dict) or not isinstance(result.get("arch"), str):
        raise HwnasError(f"{path} has no 'arch' string; give the JSON written by `hwnas search --json`")
    for key in ("budgets", "predicted"):
        if result.get(key) is not None and not isinstance(result[key], dict):
            raise HwnasError(f"{path}: {key} {quote(result[key])} is not a mapping; give the JSON written by "
                             "`hwnas search --json`")
    if result.get("space") is not None and not isinstance(result["space"], str):
        raise HwnasError(f"{path}: space {quote(result['space'])} is not a string")
    return result


def load_samples(dataset: str, limit: int = SAMPLE_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) from the dataset's test split (a name or a path, as `hwnas.data.load_dataset` takes),
    at most `limit` of them."""
    d = load_dataset(dataset, seed=0)
    return d.x_test[:limit].numpy(), d.y_test[:limit].numpy()


def sample_shape(space, input_shape=None, samples: np.ndarray | None = None, source: str = "the samples") -> tuple[int, ...]:
    """The input shape of one sample for exporting from `space`: `input_shape` (a sequence or "3x32x32") when
    given, else that of `samples`, else the space's default; checked by the space, including that a network at
    that shape fits in memory. Given samples of another shape are one HwnasError naming `source`."""
    if input_shape is not None:
        wanted = shape_from_str(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
        shape = space.check_input_shape(wanted)
        if samples is not None and tuple(samples.shape[1:]) != tuple(shape):
            raise HwnasError(f"{source} has samples of shape {shape_to_str(samples.shape[1:])}, the input shape is "
                             f"{shape_to_str(shape)}; drop the input shape or make them agree")
    else:
        shape = space.check_input_shape(samples.shape[1:] if samples is not None else space.default_input_shape)
    space.check_fits(shape)
    return tuple(shape)
