"""Latency and energy predictors (installed as hwnas.predictors): encodings, regressors under one contract,
metrics, few-shot transfer to a new device, active sampling, and the fit/predict front door."""
from hwnas.predictors import (  # noqa: F401  (register predictors)
    boosted,
    ensemble,
    gcn,
    hgp_sl,
    layer_lut,
    linear,
    mlp,
    renas,
    transfer,
    trees,
)
from hwnas.predictors.active import select_active
from hwnas.predictors.api import (
    fit_from_csv,
    fit_from_store,
    fit_predictor,
    pick_measurements,
    predict_archs,
    predict_csv,
    save_predictor,
)
from hwnas.predictors.auto import AUTO, AutoChoice, PredictorPair, choose_predictor
from hwnas.predictors.base import (
    FORMAT_VERSION,
    PREDICTORS,
    Predictor,
    build_predictor,
    get_predictor,
    load_predictor,
    register_predictor,
)
from hwnas.predictors.encodings import ENCODINGS, encode_archs, register_encoding
from hwnas.predictors.ensemble import EnsemblePredictor
from hwnas.predictors.linear import LinearCostPredictor, LookupTablePredictor
from hwnas.predictors.metrics import regression_metrics
from hwnas.predictors.transfer import TransferPredictor, pretrain_transfer

__all__ = [
    "AUTO",
    "ENCODINGS",
    "FORMAT_VERSION",
    "PREDICTORS",
    "AutoChoice",
    "EnsemblePredictor",
    "LinearCostPredictor",
    "LookupTablePredictor",
    "Predictor",
    "PredictorPair",
    "TransferPredictor",
    "build_predictor",
    "choose_predictor",
    "encode_archs",
    "fit_from_csv",
    "fit_from_store",
    "fit_predictor",
    "get_predictor",
    "load_predictor",
    "pick_measurements",
    "predict_archs",
    "predict_csv",
    "pretrain_transfer",
    "register_encoding",
    "register_predictor",
    "regression_metrics",
    "save_predictor",
    "select_active",
]
