"""Names and defaults that command options list, kept here because this module imports nothing heavy: `hwnas CMD
--help` reads them without importing torch, ONNX Runtime or scikit-learn. Each is defined once, here; the library
modules that use them import them from here and re-export them under their old names."""
from __future__ import annotations

from hwnas.registries import PREDICTORS

# --- profilers ---------------------------------------------------------------------------------------------------
#: timing protocols (hwnas.profilers.timing.TimingProtocol.named), from the fastest to the most precise
PROTOCOL_NAMES = ("quick", "default", "thorough")
#: the agent API this hwnas speaks (hwnas.profilers.agent_protocol); raised when a route or a field changes meaning.
#: An agent answering an older version is refused by name ("too old"), not misread.
API_VERSION = 1
#: the port an agent listens on
DEFAULT_PORT = 8765
#: environment variables naming the agent for commands without --agent/--token-file (search, export, validate, run;
#: hwnas.profilers.remote)
AGENT_ENV, TOKEN_FILE_ENV = "HWNAS_AGENT", "HWNAS_AGENT_TOKEN_FILE"
#: TensorRT engine precisions (hwnas.profilers.tensorrt_engine): fp32; fp16 (TensorRT may pick half-precision
#: kernels); int8 (from a QDQ model, fp16 where not quantised)
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")

# --- export ------------------------------------------------------------------------------------------------------
#: ONNX exporters (hwnas.conversion)
EXPORTERS = ("auto", "torchscript", "dynamo")
#: ONNX Runtime int8 quantisation modes (hwnas.export.quantize)
INT8_MODES = ("static", "dynamic")

# --- predictors and search ---------------------------------------------------------------------------------------
#: the predictor name that cross-validates candidates and fits the best (hwnas.predictors.auto)
AUTO = "auto"
#: the space `hwnas search` and `hwnas run` search by default: big enough that latency differences stand out of
#: timing noise
DEFAULT_SPACE = "nb201:C=16,N=3"
#: the cost predictor used when none is named: cross-validated on this device's measurements (`resolve_cost_predictor`)
DEFAULT_COST_PREDICTOR = AUTO
#: `hwnas run`'s defaults: 80 architectures profiled (each exported to ONNX: most of the 0.3 s it takes), single-level
#: DARTS (one forward and backward per step, half of first-order DARTS's) for 8 epochs, then climbing to the budget,
#: and 15 epochs of retraining: the whole run in about 80 s on two cores
RUN_SAMPLES, RUN_STRATEGY, RUN_SEARCH_EPOCHS, RUN_RETRAIN_EPOCHS = 80, "single-level", 8, 15
#: how the cost enters the loss (hwnas.search.cost): "dual" multiplier by dual ascent, or "proxyless"
FORMS = ("dual", "proxyless")
#: "target": the budget is where the search should land (an unused tightest budget is pulled up to);
#: "cap": the budget is only an upper limit
MODES = ("target", "cap")
#: what multi-objective search can optimise (hwnas.search.mo_api)
OBJECTIVE_NAMES = ("accuracy", "latency_ms", "energy_mj", "introspectability")
#: searches that train nothing (hwnas.search.training_free): name -> what it does
TRAINING_FREE_STRATEGIES = {"training-free": "a seeded sample ranked by FLOPs",
                            "training-free-evolution": "regularized evolution on FLOPs under the predicted budgets"}
#: circuit tasks of the quantum search (hwnas.search.quantum.TASKS, whose keys are these)
CIRCUIT_TASKS = ("ghz", "random-state", "maxcut")


def cost_predictor_names() -> list[str]:
    """Predictor names a search can fit and use as its cost term: differentiable on one-hot codes, or an
    additive per-operation table (they are fitted with the one-hot encoding the search feeds them)."""
    return [AUTO] + PREDICTORS.names_with("differentiable", "additive")
