"""The result of a multi-objective search: its Pareto front, saved (JSON, CSV, one exportable JSON per point),
plotted and tabulated; and the front-quality measures bench/front.py uses (hypervolume, IGD, from pymoo).

A point is on the front when it is feasible (every constraint value <= 0) and no other feasible point is at least
as good in every objective and better in one. Points with the same architecture string are one point.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.files import atomic_write


@dataclass
class FrontPoint:
    """One evaluated architecture: its string, objective values by name, every metric, feasibility, trial."""

    arch: str
    values: dict[str, float]
    feasible: bool
    trial: int
    metrics: dict[str, float] = field(default_factory=dict)
    constraints: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "values": self.values, "feasible": self.feasible, "trial": self.trial,
                "metrics": self.metrics, "constraints": self.constraints}


def nondominated(values: np.ndarray, maximize: list[bool]) -> np.ndarray:
    """Boolean mask of the rows of `values` (points x objectives) no other row dominates."""
    v = np.asarray(values, np.float64)
    if len(v) == 0:
        return np.zeros(0, bool)
    v = np.where(np.asarray(maximize), -v, v)  # everything minimised
    keep = np.ones(len(v), bool)
    for i in range(len(v)):
        if keep[i]:
            dominated = np.all(v[i] <= v, axis=1) & np.any(v[i] < v, axis=1)
            keep &= ~dominated
    return keep


@dataclass
class ParetoResult:
    """`front`: feasible non-dominated points sorted by the first objective; `points`: every finished trial."""

    space: str
    strategy: str
    objectives: list[str]
    directions: list[str]
    constraints: dict[str, float]
    front: list[FrontPoint]
    points: list[FrontPoint]
    study_name: str = ""
    storage: str | None = None
    failed_trials: int = 0
    #: objectives/budgets that are this device's predictions (device mode): exported points carry them
    device_metrics: list[str] = field(default_factory=list)

    def front_values(self) -> np.ndarray:
        return np.array([[p.values[n] for n in self.objectives] for p in self.front], np.float64).reshape(
            len(self.front), len(self.objectives))

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "strategy": self.strategy, "objectives": self.objectives,
                "directions": self.directions, "constraints": self.constraints, "study_name": self.study_name,
                "storage": self.storage, "trials": len(self.points), "failed_trials": self.failed_trials,
                "feasible_trials": sum(p.feasible for p in self.points),
                "front": [p.to_dict() for p in self.front]}

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """(header, rows) of the front for printing: index, each objective, trial, architecture."""
        header = ["#", *self.objectives, "trial", "arch"]
        rows = [[k, *(f"{p.values[n]:.4g}" for n in self.objectives), p.trial, p.arch]
                for k, p in enumerate(self.front)]
        return header, rows

    def csv_text(self) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["index", "arch", *self.objectives, "feasible", "trial"])
        for k, p in enumerate(self.front):
            w.writerow([k, p.arch, *(p.values[n] for n in self.objectives), p.feasible, p.trial])
        return out.getvalue()

    def point_result(self, k: int) -> dict[str, Any]:
        """Front point `k` as a search result `hwnas export --from-search` reads: space, arch, and for the metrics
        predicted for this device (`device_metrics`) the prediction and budget; every objective under
        "front_values" (a table's latency is another device's, so it is never carried as "predicted")."""
        p = self.front[k]
        mine = [m for m in self.device_metrics if m in p.metrics]
        return {"space": self.space, "arch": p.arch, "predicted": {m: p.metrics[m] for m in mine},
                "budgets": {m: v for m, v in self.constraints.items() if m in mine},
                "test_accuracy": None, "front_index": k, "front_values": p.values, "strategy": self.strategy}

    def save(self, run_dir: str | Path, plot: bool = True) -> dict[str, str]:
        """Write RUN_DIR/front.json, front.csv, front.png (when `plot`) and front/K.json per point (for
        `hwnas export --from-search RUN_DIR/front/K.json`); returns {kind: path}."""
        run_dir = Path(run_dir)
        paths = {"json": run_dir / "front.json", "csv": run_dir / "front.csv"}
        with atomic_write(paths["json"]) as f:
            f.write(json.dumps(self.to_dict(), indent=2))
        with atomic_write(paths["csv"]) as f:
            f.write(self.csv_text())
        for k in range(len(self.front)):
            with atomic_write(run_dir / "front" / f"{k}.json") as f:
                f.write(json.dumps(self.point_result(k), indent=2))
        if plot and len(self.objectives) >= 1:
            paths["plot"] = run_dir / "front.png"
            self.plot(paths["plot"])
        return {k: str(v) for k, v in paths.items()}

    def plot(self, path: str | Path) -> None:
        """Every trial (grey: feasible, light red: infeasible) and the front (connected) for the first two
        objectives; a third objective colours the front."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x_name = self.objectives[-1] if len(self.objectives) == 1 else self.objectives[1]
        y_name = self.objectives[0]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for feasible, colour, label in ((True, "0.7", "feasible trials"), (False, "#f4a6a6", "infeasible trials")):
            pts = [p for p in self.points if p.feasible == feasible]
            if pts:
                ax.scatter([p.values[x_name] for p in pts], [p.values[y_name] for p in pts], s=8, c=colour, label=label)
        front = sorted(self.front, key=lambda p: p.values[x_name])
        if front:
            c = [p.values[self.objectives[2]] for p in front] if len(self.objectives) > 2 else "tab:blue"
            ax.plot([p.values[x_name] for p in front], [p.values[y_name] for p in front], "-", c="tab:blue", lw=1)
            sc = ax.scatter([p.values[x_name] for p in front], [p.values[y_name] for p in front], s=24, c=c,
                            label="Pareto front", zorder=3)
            if len(self.objectives) > 2:
                fig.colorbar(sc, ax=ax, label=self.objectives[2])
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
        budgets = ", ".join(f"{k} <= {v:g}" for k, v in self.constraints.items())
        ax.set_title(f"{self.strategy}: {len(self.points)} trials, {len(self.front)} on the front"
                     + (f"\n{budgets}" if budgets else ""), fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)


def pareto_result(study, spec) -> ParetoResult:
    """The ParetoResult of an Optuna study searched with `spec` (a StudySpec)."""
    from optuna.trial import TrialState

    names = [o.name for o in spec.objectives]
    points: list[FrontPoint] = []
    failed = 0
    for t in study.get_trials(deepcopy=False):
        if t.state != TrialState.COMPLETE:
            failed += t.state == TrialState.FAIL
            continue
        cons = [float(c) for c in t.user_attrs.get("constraints", ())]
        points.append(FrontPoint(arch=t.user_attrs.get("arch", ""), values=dict(zip(names, map(float, t.values))),
                                 feasible=all(c <= 0 for c in cons), trial=t.number,
                                 metrics=dict(t.user_attrs.get("metrics", {})), constraints=cons))
    unique: dict[str, FrontPoint] = {}
    for p in points:
        if p.feasible:
            unique.setdefault(p.arch, p)
    feasible = list(unique.values())
    maximize = [d == "maximize" for d in spec.directions]
    mask = nondominated(np.array([[p.values[n] for n in names] for p in feasible]).reshape(len(feasible), len(names)),
                        maximize)
    front = sorted((p for p, keep in zip(feasible, mask) if keep), key=lambda p: p.values[names[0]],
                   reverse=maximize[0])
    return ParetoResult(space=spec.space, strategy=spec.strategy, objectives=names, directions=list(spec.directions),
                        constraints={c.name: float(c.limit) for c in spec.constraints}, front=front, points=points,
                        study_name=spec.study_name, storage=spec.storage, failed_trials=failed)


# --- front quality (bench/front.py, tests) ---------------------------------------------------------------------
def to_minimised(values: np.ndarray, maximize: list[bool], low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] per objective by (low, high), flipped so that every objective is minimised."""
    v = (np.asarray(values, np.float64) - low) / np.maximum(high - low, 1e-12)
    return np.where(np.asarray(maximize), 1.0 - v, v)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume of minimised `points` w.r.t. `reference` (pymoo's implementation; moo extra)."""
    from pymoo.indicators.hv import HV

    pts = np.asarray(points, np.float64)
    pts = pts[np.all(pts < reference, axis=1)]
    return 0.0 if len(pts) == 0 else float(HV(ref_point=np.asarray(reference, np.float64))(pts))


def igd(points: np.ndarray, true_front: np.ndarray) -> float:
    """Inverted generational distance of minimised `points` to `true_front` (pymoo's implementation)."""
    from pymoo.indicators.igd import IGD

    return float(IGD(np.asarray(true_front, np.float64))(np.asarray(points, np.float64)))
