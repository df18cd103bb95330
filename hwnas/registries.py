"""Every built-in registry, with the names it holds and the module that registers each (see hwnas.registry).

This module imports nothing heavy, so option lists (`hwnas CMD --help`) come from here without torch. Adding a
space, backend, predictor, strategy, ... is one file with its decorator (`@register_space("name")`, ...) plus its
declaration line below; tests/test_fast_cli.py checks that both agree. The library modules re-export these
objects under their old names (hwnas.spaces.SPACES, hwnas.profilers.BACKENDS, ...)."""
from __future__ import annotations

from hwnas.registry import Registry

# --- core: search spaces ---------------------------------------------------------------------------------------
SPACES: Registry = Registry("search space")
SPACES.declare("circuit", "hwnas.spaces.circuit")
SPACES.declare("mbv3", "hwnas.spaces.mbv3")
SPACES.declare("nb201", "hwnas.spaces.nb201")
SPACES.declare("nb201-snn", "hwnas.spaces.nb201_snn")
SPACES.declare("rnn-cell", "hwnas.spaces.rnn_cell")
SPACES.declare("snn-transformer", "hwnas.spaces.snn_transformer")

# --- predictors: regressors and architecture encodings ---------------------------------------------------------
#: traits: `differentiable` (torch_module() maps encodings to predictions), `additive` (a per-operation table)
PREDICTORS: Registry = Registry("predictor", traits=("differentiable", "additive"))
PREDICTORS.declare("cost-gbt", "hwnas.predictors.boosted")
PREDICTORS.declare("ensemble", "hwnas.predictors.ensemble")
PREDICTORS.declare("gbt", "hwnas.predictors.trees")
PREDICTORS.declare("gcn", "hwnas.predictors.gcn")
PREDICTORS.declare("hgp-sl", "hwnas.predictors.hgp_sl")
PREDICTORS.declare("layer-lut", "hwnas.predictors.layer_lut", differentiable=True)
PREDICTORS.declare("linear-cost", "hwnas.predictors.linear")
PREDICTORS.declare("lookup", "hwnas.predictors.linear", additive=True)
PREDICTORS.declare("mlp", "hwnas.predictors.mlp", differentiable=True)
PREDICTORS.declare("renas", "hwnas.predictors.renas")
PREDICTORS.declare("rf", "hwnas.predictors.trees")
PREDICTORS.declare("ridge", "hwnas.predictors.linear")
PREDICTORS.declare("transfer", "hwnas.predictors.transfer", differentiable=True)

ENCODINGS: Registry = Registry("encoding")
for _name in ("analytic", "cost", "cost-features", "features", "graph", "live-onehot", "onehot", "op-counts"):
    ENCODINGS.declare(_name, "hwnas.predictors.encodings")

# --- profilers: backends, energy meters, samplers, fleet executors ---------------------------------------------
#: trait: `runs_onnx` (measure_onnx times an exported ONNX file as deployed)
BACKENDS: Registry = Registry("backend", traits=("runs_onnx",))
BACKENDS.declare("onnxruntime-cpu", "hwnas.profilers.onnxruntime", runs_onnx=True)
BACKENDS.declare("onnxruntime-cuda", "hwnas.profilers.onnxruntime", runs_onnx=True)
BACKENDS.declare("remote", "hwnas.profilers.remote", runs_onnx=True)
BACKENDS.declare("spiking", "hwnas.profilers.spiking")
BACKENDS.declare("tensorrt", "hwnas.profilers.tensorrt", runs_onnx=True)
BACKENDS.declare("torch-cpu", "hwnas.profilers.torch_backend")
BACKENDS.declare("torch-cuda", "hwnas.profilers.torch_backend")
BACKENDS.declare("torch-cuda-graph", "hwnas.profilers.torch_backend")

ENERGY_METERS: Registry = Registry("energy meter")
ENERGY_METERS.declare("analytical", "hwnas.profilers.energy")
ENERGY_METERS.declare("nvml", "hwnas.profilers.nvml")
ENERGY_METERS.declare("nvml-power", "hwnas.profilers.nvml")
ENERGY_METERS.declare("rapl", "hwnas.profilers.energy")
ENERGY_METERS.declare("spike-ops", "hwnas.profilers.spiking")

SAMPLERS: Registry = Registry("sampler")
SAMPLERS.declare("active", "hwnas.profilers.samplers")
SAMPLERS.declare("flops", "hwnas.profilers.samplers")
SAMPLERS.declare("uniform", "hwnas.profilers.samplers")

#: name -> function(workers, todo, job, on_result, on_lost, **options): hands `todo` out to a fleet's agents
FLEET_EXECUTORS: Registry = Registry("executor")
FLEET_EXECUTORS.declare("ray", "hwnas.profilers.fleet_ray")
FLEET_EXECUTORS.declare("threads", "hwnas.profilers.fleet")

# --- search: strategies, multi-objective samplers and workers, zero-cost proxies --------------------------------
STRATEGIES: Registry = Registry("search strategy")
STRATEGIES.declare("darts", "hwnas.search.darts")
STRATEGIES.declare("darts-2nd", "hwnas.search.darts")
STRATEGIES.declare("dqas", "hwnas.search.dqas")
STRATEGIES.declare("growing", "hwnas.search.growing")
STRATEGIES.declare("gumbel", "hwnas.search.gumbel")
STRATEGIES.declare("mean-shift", "hwnas.search.mean_shift")
STRATEGIES.declare("single-level", "hwnas.search.single_level")
STRATEGIES.declare("zero-cost", "hwnas.search.zero_cost_search")

MO_STRATEGIES: Registry = Registry("multi-objective search strategy")
MO_STRATEGIES.declare("evolution", "hwnas.search.multi_objective")
MO_STRATEGIES.declare("nsga2", "hwnas.search.multi_objective")
MO_STRATEGIES.declare("random", "hwnas.search.multi_objective")

#: how the workers of one multi-objective study run
WORKER_EXECUTORS: Registry = Registry("worker executor")
WORKER_EXECUTORS.declare("inline", "hwnas.search.multi_objective")
WORKER_EXECUTORS.declare("process", "hwnas.search.multi_objective")
WORKER_EXECUTORS.declare("ray", "hwnas.search.ray_workers")

PROXIES: Registry = Registry("zero-cost proxy")
for _name in ("az_expressivity", "az_progressivity", "az_trainability", "fisher", "flops", "genas_flatness",
              "grad_norm", "grasp", "isometry", "jacob_cov", "naswot", "params", "snip", "synflow", "zen"):
    PROXIES.declare(_name, "hwnas.search.zero_cost")

#: every registry above, by the name it is exported under
ALL: dict[str, Registry] = {
    "SPACES": SPACES, "PREDICTORS": PREDICTORS, "ENCODINGS": ENCODINGS, "BACKENDS": BACKENDS,
    "ENERGY_METERS": ENERGY_METERS, "SAMPLERS": SAMPLERS, "FLEET_EXECUTORS": FLEET_EXECUTORS,
    "STRATEGIES": STRATEGIES, "MO_STRATEGIES": MO_STRATEGIES, "WORKER_EXECUTORS": WORKER_EXECUTORS,
    "PROXIES": PROXIES,
}
