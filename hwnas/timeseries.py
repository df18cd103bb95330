"""Forecasting data that needs no download: statsmodels' US macroeconomic series (macrodata, 1959Q1-2009Q3).

`load_forecast("macrodata", window=8)` gives a `hwnas.data.Dataset` whose inputs are windows (N, window, series)
of past quarters and whose targets (N, series, float32) are the next quarter of every series. The series are
made stationary (quarterly growth in percent for the real quantities, the change for the rates), split by time
(the first 70% of target quarters train, the next 15% validation, the last 15% test: no future quarter is ever
seen in training) and standardised with the statistics of the training period only. `num_classes` is the number
of series (the outputs a forecaster has).
"""
from __future__ import annotations

import numpy as np
import torch

from hwnas.data import Dataset
from hwnas.errors import HwnasError, quote

#: (column, transform): "growth" = 100 * diff(log), "diff" = first difference
MACRO_SERIES = (("realgdp", "growth"), ("realcons", "growth"), ("realinv", "growth"), ("unemp", "diff"))
FORECAST_DATASETS = ("macrodata",)
SPLIT = (0.70, 0.15)  # train and validation shares of the target quarters; the rest is test


def macro_series() -> np.ndarray:
    """(quarters - 1, len(MACRO_SERIES)) float64: the stationary macrodata series, oldest first."""
    try:
        from statsmodels.datasets import macrodata
    except ImportError:
        raise HwnasError("the forecasting task needs statsmodels; install hwnas[timeseries]") from None
    frame = macrodata.load_pandas().data
    columns = []
    for name, transform in MACRO_SERIES:
        values = frame[name].to_numpy(np.float64)
        columns.append(100.0 * np.diff(np.log(values)) if transform == "growth" else np.diff(values))
    return np.stack(columns, axis=1)


def load_forecast(name: str = "macrodata", window: int = 8) -> Dataset:
    """Windows of `window` quarters and the next quarter as target, split by time; see the module docstring."""
    if name not in FORECAST_DATASETS:
        raise HwnasError(f"unknown forecasting dataset {quote(name)}; accepted: {', '.join(FORECAST_DATASETS)}")
    series = macro_series()
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= len(series) // 4:
        raise HwnasError(f"window {quote(window)} is not accepted; give a whole number 1..{len(series) // 4}")
    targets = np.arange(window, len(series))  # the quarter each sample forecasts
    train_end = window + int(SPLIT[0] * len(targets))
    val_end = train_end + int(SPLIT[1] * len(targets))
    mean, std = series[:train_end].mean(axis=0), series[:train_end].std(axis=0)  # the training period only
    scaled = ((series - mean) / std).astype(np.float32)
    x = np.stack([scaled[t - window:t] for t in targets])
    y = scaled[targets]
    parts = [targets < train_end, (targets >= train_end) & (targets < val_end), targets >= val_end]
    tensors = [(torch.from_numpy(x[m]), torch.from_numpy(y[m])) for m in parts]
    return Dataset(f"{name}:window={window}", *tensors[0], *tensors[1], *tensors[2], num_classes=len(MACRO_SERIES))
