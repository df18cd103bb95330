"""Search under a hardware budget: the differentiable cost term, strategies on one supernet, budget-respecting
discretisation with measure-and-repair, retraining, and a tabular mode for benchmarking on published data."""
from hwnas.search import darts, gumbel, mean_shift, single_level  # noqa: F401  (register the strategies)
from hwnas.search.budget import (
                                 SearchResult,
                                 check_budget_reachable,
                                 discretise_and_verify,
                                 save_search_plot,
                                 search_under_budget,
)
from hwnas.search.cost import HardwareCost, op_table_from_measurements, total_loss
from hwnas.search.discretise import derive_within_budget
from hwnas.search.strategy import STRATEGIES, Strategy, get_strategy, register_strategy, run_search
from hwnas.search.tabular import tabular_search
from hwnas.search.train import evaluate, train_arch

__all__ = [
                                 "STRATEGIES",
                                 "HardwareCost",
                                 "SearchResult",
                                 "Strategy",
                                 "check_budget_reachable",
                                 "derive_within_budget",
                                 "discretise_and_verify",
                                 "evaluate",
                                 "get_strategy",
                                 "op_table_from_measurements",
                                 "register_strategy",
                                 "run_search",
                                 "save_search_plot",
                                 "search_under_budget",
                                 "tabular_search",
                                 "total_loss",
                                 "train_arch",
]
