"""`auto`: choose the predictor by k-fold cross-validation on the user's own measurements.

No one regressor is best at every size and on every device: `linear-cost` ranks a space well from 10 rows,
`cost-gbt` is the most accurate from ~50 rows, and the differentiable `lookup` / `mlp` are what a gradient-based
search can use. `choose_predictor` fits every candidate that suits the number of rows on k-1 folds, predicts the
held-out fold, and scores the pooled out-of-fold predictions by what a budgeted search needs:

    score = (Spearman over every row + share within ±10% among rows near the budget) / 2

"near the budget" is within ±30% of it when a budget is known and at least 5 rows lie there, otherwise every
row above the metrics' near-zero floor. At most CV_ROWS rows (a random subset) are cross-validated, in 3 folds above FEW_FOLDS_FROM. Ties (within 0.005) go to the earlier, simpler candidate. The chosen
name, its encoding and every candidate's figures go into the fitted predictor's metadata under "auto".
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hwnas.choices import AUTO  # noqa: F401  (re-exported)
from hwnas.errors import HwnasError
from hwnas.predictors.base import get_predictor
from hwnas.predictors.encodings import encode_archs
from hwnas.predictors.metrics import finite_metrics, regression_metrics

#: candidate -> the fewest rows it is tried with (in the order ties are broken: simplest first)
CANDIDATES: dict[str, int] = {"linear-cost": 5, "lookup": 20, "cost-gbt": 30, "mlp": 300}
#: candidates whose fitted form can drive a differentiable search's cost term on one-hot codes
DIFFERENTIABLE = ("lookup", "mlp")
NEAR_BUDGET = 0.30
#: at most this many rows (a random subset) are cross-validated: enough to rank the candidates, and fast
CV_ROWS = 500
#: above this many rows, 3 folds rather than `folds` (the candidates' ranking is settled; the neural one is slow)
FEW_FOLDS_FROM = 300
TIE = 0.005


@dataclass
class CandidateScore:
    predictor: str
    encoding: str
    score: float
    spearman: float | None
    within_10_near: float | None
    mape: float | None
    near_rows: int
    seconds: float


@dataclass
class AutoChoice:
    """What `choose_predictor` found: the winner, and every candidate's cross-validated figures."""

    predictor: str
    encoding: str
    folds: int
    rows: int
    budget: float | None
    scores: list[CandidateScore] = field(default_factory=list)

    def best_of(self, names: Sequence[str]) -> CandidateScore | None:
        """The best-scoring candidate among `names` (ties to the earlier one), or None when none was tried."""
        tried = [s for s in self.scores if s.predictor in names]
        return _best(tried)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.predictor, "encoding": self.encoding, "folds": self.folds, "rows": self.rows,
                "budget": self.budget, "scores": [asdict(s) for s in self.scores]}


def _best(scores: list[CandidateScore]) -> CandidateScore | None:
    best = None
    for s in scores:  # in candidate order: a later one must beat the best by more than TIE
        if best is None or s.score > best.score + TIE:
            best = s
    return best


def suitable_candidates(rows: int, names: Sequence[str] | None = None) -> list[str]:
    """The candidates tried on `rows` measurements (each needs at least its CANDIDATES count)."""
    names = list(names or CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise HwnasError(f"unknown auto candidate(s) {', '.join(unknown)}; accepted: {', '.join(CANDIDATES)}")
    return [n for n in names if rows >= CANDIDATES[n]]


def fold_indices(rows: int, folds: int, seed: int) -> list[np.ndarray]:
    """`folds` disjoint held-out index sets covering every row once (leave-one-out when rows <= folds)."""
    order = np.random.default_rng(seed).permutation(rows)
    return [part for part in np.array_split(order, min(folds, rows)) if len(part)]


def out_of_fold(name: str, X: np.ndarray, y: np.ndarray, folds: list[np.ndarray], encoding: str, seed: int,
                ) -> np.ndarray:
    """Each row's prediction by `name` fitted on the other folds."""
    pred = np.empty(len(y))
    for held in folds:
        train = np.setdiff1d(np.arange(len(y)), held)
        model = get_predictor(name, encoding=encoding, seed=seed).fit(X[train], y[train])
        pred[held] = model.predict(X[held])
    return pred


def score_predictions(y: np.ndarray, pred: np.ndarray, budget: float | None) -> dict[str, Any]:
    """Spearman over every row, and the within-±10% share and MAPE near the budget (see the module doc)."""
    overall = finite_metrics(regression_metrics(y, pred))
    near = np.zeros(len(y), bool)
    if budget is not None and budget > 0:
        near = np.abs(y / budget - 1.0) <= NEAR_BUDGET
    if near.sum() >= 5:
        local = finite_metrics(regression_metrics(y[near], pred[near], floor=0.0))
        w10, mape, n_near = local["within_10"], local["mape"], int(near.sum())
    else:
        w10, mape, n_near = overall["within_10"], overall["mape"], int(len(y) - overall["n_excluded"])
    rho = overall["spearman"]
    score = 0.5 * (rho if rho is not None else 0.0) + 0.5 * (w10 if w10 is not None else 0.0)
    return {"score": float(score), "spearman": rho, "within_10_near": w10, "mape": mape, "near_rows": n_near}


def choose_predictor(space, archs: Sequence[Any], y: np.ndarray, input_shape=None, budget: float | None = None,
                     candidates: Sequence[str] | None = None, folds: int = 5, seed: int = 0,
                     encodings: dict[str, str] | None = None) -> AutoChoice:
    """Cross-validate the candidates that suit len(y) (`suitable_candidates`) on (archs, y) and return the best.

    `encodings` overrides a candidate's encoding (the search asks for one-hot codes for `lookup` and `mlp`)."""
    y = np.asarray(y, np.float64)
    archs = list(archs)
    if len(y) > CV_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), CV_ROWS, replace=False))
        archs, y = [archs[i] for i in keep], y[keep]
    names = suitable_candidates(len(y), candidates)
    if not names:
        raise HwnasError(f"only {len(y)} measurement(s): too few for any auto candidate "
                         f"({', '.join(f'{n} from {k}' for n, k in CANDIDATES.items())})")
    parts = fold_indices(len(y), min(folds, 3) if len(y) > FEW_FOLDS_FROM else folds, seed)
    scores, codes = [], {}
    for name in names:
        encoding = get_predictor(name, encoding=(encodings or {}).get(name), space=space).encoding
        if encoding not in codes:
            codes[encoding] = encode_archs(space, archs, encoding, input_shape)
        started = time.perf_counter()
        pred = out_of_fold(name, codes[encoding], y, parts, encoding, seed)
        figures = score_predictions(y, pred, budget)
        scores.append(CandidateScore(name, encoding, seconds=round(time.perf_counter() - started, 2), **figures))
    best = _best(scores)
    return AutoChoice(best.predictor, best.encoding, len(parts), len(y), budget, scores)


def best_differentiable(auto: dict[str, Any]) -> str:
    """From a saved choice (`AutoChoice.to_dict()`): the best-scoring candidate a differentiable search can use as
    its cost term (one of DIFFERENTIABLE), or "lookup" when none was tried."""
    tried = [CandidateScore(**s) for s in auto.get("scores", []) if s.get("predictor") in DIFFERENTIABLE]
    best = _best(tried)
    return best.predictor if best is not None else "lookup"


@dataclass
class PredictorPair:
    """Two predictors of one target for a search: `cost` (differentiable or additive, on one-hot codes) drives
    the relaxed cost term, `exact` (the most accurate) judges discrete architectures in discretisation and repair.
    Everywhere else (saving, metadata, held-out figures) the pair is its `exact` predictor."""

    cost: Any
    exact: Any

    def __getattr__(self, name: str) -> Any:
        if name in ("cost", "exact"):  # not yet set (copy, unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.exact, name)
