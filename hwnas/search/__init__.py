"""Search under a hardware budget: the differentiable cost term, strategies on one supernet, budget-respecting
discretisation with measure-and-repair, retraining, and a tabular mode for benchmarking on published data.
`hwnas.search.api.search_device` is the whole device search (what `hwnas search` runs) as one call."""
# register the strategies, and the "ray" worker executor of multi-objective search (ray itself imports lazily)
from hwnas.search import (  # noqa: F401
    darts,
    dqas,
    growing,
    gumbel,
    mean_shift,
    ray_workers,
    single_level,
    zero_cost_search,
)
from hwnas.search.api import (
    DEFAULT_SPACE,
    SearchOptions,
    cost_predictor_names,
    resolve_cost_predictor,
    search_device,
)
from hwnas.search.budget import (
    BudgetSearchOptions,
    SearchResult,
    check_budget_reachable,
    discretise_and_verify,
    epoch_line,
    save_search_plot,
    search_under_budget,
)
from hwnas.search.cost import HardwareCost, op_table_from_measurements, total_loss
from hwnas.search.discretise import derive_within_budget
from hwnas.search.strategy import STRATEGIES, Strategy, get_strategy, register_strategy, run_search
from hwnas.search.tabular import TabularOptions, tabular_search
from hwnas.search.train import evaluate, train_arch

__all__ = [
    "DEFAULT_SPACE",
    "STRATEGIES",
    "BudgetSearchOptions",
    "HardwareCost",
    "SearchOptions",
    "SearchResult",
    "Strategy",
    "TabularOptions",
    "check_budget_reachable",
    "cost_predictor_names",
    "derive_within_budget",
    "discretise_and_verify",
    "epoch_line",
    "evaluate",
    "get_strategy",
    "op_table_from_measurements",
    "register_strategy",
    "resolve_cost_predictor",
    "run_search",
    "save_search_plot",
    "search_device",
    "search_under_budget",
    "tabular_search",
    "total_loss",
    "train_arch",
]
