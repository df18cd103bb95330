"""Latency and energy predictors (installed as hwnas.predictors)."""
from hwnas.predictors.base import PREDICTORS, Predictor, get_predictor, load_predictor, register_predictor
from hwnas.predictors import mlp  # noqa: F401  (registers "mlp")

__all__ = ["PREDICTORS", "Predictor", "get_predictor", "load_predictor", "register_predictor"]
