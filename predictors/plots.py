"""Predicted-vs-measured scatter plots (matplotlib, written to PNG without a display)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_predicted_vs_measured(y_true, y_pred, path: str | Path, title: str = "", unit: str = "ms",
                               ax=None) -> Path | None:
    """Log-log scatter with the y = x line and the +-10% band; draws into `ax` when given (no file then)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
    positive = (y > 0) & (p > 0)
    ax.scatter(y[positive], p[positive], s=4, alpha=0.4, linewidths=0)
    if positive.any():
        lo, hi = float(min(y[positive].min(), p[positive].min())), float(max(y[positive].max(), p[positive].max()))
        line = np.geomspace(lo, hi, 50)
        ax.plot(line, line, "k-", lw=0.8)
        ax.fill_between(line, line * 0.9, line * 1.1, color="k", alpha=0.12, label="±10%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

        subs = (1.0, 2.0, 5.0) if np.log10(hi / lo) < 2.5 else (1.0,)
        for axis in (ax.xaxis, ax.yaxis):  # plain labels: log minor labels (3x10^0...) overlap
            axis.set_major_locator(LogLocator(base=10, subs=subs))
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"measured ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(title, fontsize=9)
    if own:
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
    return None
