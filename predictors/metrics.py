"""Accuracy of a latency or energy predictor against measurements.

Keys: `mape` (mean absolute percentage error, %), `rmse` (in the target's units), `within_5` and `within_10`
(share of architectures whose prediction is within +-5% / +-10% of the measurement, 0..1), `spearman` and
`kendall` (rank correlations, what a search cares about), `n` (rows compared) and `n_excluded`.

Near-zero measurements. Some published latencies are close to zero: on pixel3 and raspi4, NAS-Bench-201 cells
with no path from input to output were compiled down to almost nothing (0.003 ms against a median of 10 ms).
A relative error against such a value is meaningless (a 0.01 ms miss would be a 300% error). The rule:

    relative metrics (mape, within_5, within_10) use only rows whose measurement is >= floor;
    floor defaults to 5% of the median measurement (floor="auto"), or is an absolute value in the target's units;
    rmse, spearman and kendall use every row; `n_excluded` counts the rows the relative metrics left out.

So a predictor is not flattered by dropping hard rows from the rank metrics, and the count says how many
rows the relative figures do not speak for.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

from hwnas.errors import HwnasError

#: floor="auto" means this share of the median measurement
AUTO_FLOOR_SHARE = 0.05


def regression_metrics(y_true, y_pred, floor: float | str = "auto") -> dict[str, Any]:
    y = np.asarray(y_true, np.float64).reshape(-1)
    p = np.asarray(y_pred, np.float64).reshape(-1)
    if y.shape != p.shape:
        raise HwnasError(f"{len(y)} measurements but {len(p)} predictions; they must pair up")
    if len(y) == 0:
        raise HwnasError("no measurements to evaluate a predictor on")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(p))):
        raise HwnasError("measurements and predictions must be finite numbers")
    if floor == "auto":
        floor_value = AUTO_FLOOR_SHARE * float(np.median(np.abs(y)))
    else:
        try:
            floor_value = float(floor)
        except (TypeError, ValueError):
            raise HwnasError(f"metric floor {floor!r} is not accepted; accepted: 'auto' or a number") from None
    kept = y >= floor_value
    if kept.any():
        rel = np.abs(p[kept] - y[kept]) / y[kept]
        mape, w5, w10 = 100.0 * float(rel.mean()), float(np.mean(rel <= 0.05)), float(np.mean(rel <= 0.10))
    else:
        mape = w5 = w10 = float("nan")
    ranked = len(y) > 1 and np.ptp(y) > 0 and np.ptp(p) > 0  # rank correlation is undefined for constants
    return {
        "mape": mape,
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "within_5": w5,
        "within_10": w10,
        "spearman": float(spearmanr(y, p)[0]) if ranked else float("nan"),
        "kendall": float(kendalltau(y, p)[0]) if ranked else float("nan"),
        "n": len(y),
        "n_excluded": int((~kept).sum()),
        "floor": floor_value,
    }


def finite_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` with every non-finite number (an undefined MAPE or rank correlation) as None, so that what is
    saved and printed as JSON is valid and never NaN."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()}
