"""RL-DARTS: a DARTS supernet as the image encoder of a reinforcement-learning agent, trained end to end.

The agent is stable-baselines3's PPO with a custom features extractor. During the search the extractor is a
supernet of the image space (nb201 by default) mixed by architecture parameters `alpha` that live in the policy,
so PPO's optimiser learns them together with the policy and the supernet itself acts while it is trained. The
derived cell (argmax of alpha, or, under a latency budget, the budget machinery's measured-within-budget cell)
is then retrained from scratch with the same PPO settings, seeds and steps as MinAtar's hand-designed baseline
encoder (one 3x3 convolution with 16 channels and a 128-unit layer, the Nature-CNN-style network of MinAtar's
DQN baseline), and their evaluation returns are compared. The derived encoder is exported to ONNX and its latency
measured on the device like any architecture of the space.

Environments: MinAtar's gymnasium ids (e.g. MinAtar/Breakout-v1), registered offline with
`minatar.gym.register_envs()`. Observations (10, 10, C) booleans become (C, 12, 12) float32, zero-padded so the
nb201 skeleton (two stride-2 reductions) can read them; every encoder sees the same padded image.
stable-baselines3, gymnasium and minatar are imported only when a run starts (install hwnas[rl]).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write
from hwnas.profilers import TimingProtocol, get_backend, measure_arch, profile_space
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.api import resolve_cost_predictor
from hwnas.search.budget import discretise_and_verify
from hwnas.search.cost import HardwareCost
from hwnas.spaces import get_space
from hwnas.store import open_store

#: padded image side: the nb201 skeleton needs a multiple of 4
IMAGE_SIDE = 12


def _rl_modules():
    try:
        import gymnasium
        import minatar.gym
        import stable_baselines3
    except ImportError as e:
        raise HwnasError(f"RL search needs stable-baselines3, gymnasium and minatar ({e.name} is missing); "
                         "install hwnas[rl]") from None
    return gymnasium, minatar.gym, stable_baselines3


def make_env(env_id: str, max_steps: int = 1000):
    """A MinAtar gymnasium environment with (C, 12, 12) float32 observations and a time limit."""
    gymnasium, minatar_gym, _ = _rl_modules()
    if not str(env_id).startswith("MinAtar/"):
        raise HwnasError(f"environment {quote(env_id)} is not accepted; accepted: MinAtar ids such as "
                         "MinAtar/Breakout-v1 (Asterix, Breakout, Freeway, Seaquest, SpaceInvaders; -v0 or -v1)")
    if env_id not in gymnasium.registry:
        minatar_gym.register_envs()
    try:
        env = gymnasium.make(env_id, max_episode_steps=max_steps)
    except gymnasium.error.Error as e:
        raise HwnasError(f"environment {quote(env_id)} is not accepted ({e}); accepted: MinAtar ids such as "
                         "MinAtar/Breakout-v1") from None
    return padded_image(env, gymnasium)


def padded_image(env, gymnasium):
    """`env` with (C, 12, 12) float32 observations (the wrapper class is made here: importing needs no gymnasium)."""

    class PaddedImage(gymnasium.ObservationWrapper):
        def __init__(self, inner):
            super().__init__(inner)
            h, w, c = inner.observation_space.shape
            self.pad = ((0, 0), (0, IMAGE_SIDE - h), (0, IMAGE_SIDE - w))
            self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (c, IMAGE_SIDE, IMAGE_SIDE), np.float32)

        def observation(self, observation):
            return np.pad(np.moveaxis(observation.astype(np.float32), -1, 0), self.pad)

    return PaddedImage(env)


class SupernetEncoder(nn.Module):
    """Features extractor for the search: the space's supernet mixed by `alpha`, a parameter of the policy."""

    def __init__(self, observation_space, space_spec: str = "nb201:C=4,N=1", features_dim: int = 64,
                 seed: int = 0, alpha_scale: float = 10.0):
        super().__init__()
        # the logits are alpha_scale * alpha: PPO's one Adam learning rate, scaled up for the architecture only
        # (its steps on alpha are at most lr, too small to move the logits in a short run)
        self.alpha_scale = float(alpha_scale)
        self.space = get_space(space_spec, classes=features_dim)
        self.features_dim = features_dim
        self.supernet = self.space.supernet(tuple(observation_space.shape))
        g = torch.Generator().manual_seed(seed)
        self.alpha = nn.Parameter(1e-3 * torch.randn(self.space.alpha_shape, generator=g))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.supernet(observations, self.space.mixing_weights(self.logits())))

    def logits(self) -> torch.Tensor:
        """The architecture parameters in the space's layout (what `space.derive` reads)."""
        return self.alpha_scale * self.alpha


class CellEncoder(nn.Module):
    """Features extractor of a derived cell: the space's network with `features_dim` outputs, then ReLU."""

    def __init__(self, observation_space, space_spec: str = "nb201:C=4,N=1", arch: str = "", features_dim: int = 64):
        super().__init__()
        space = get_space(space_spec, classes=features_dim)
        self.features_dim = features_dim
        self.network = space.build(space.parse(arch), tuple(observation_space.shape))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.network(observations))


class MinAtarBaselineEncoder(nn.Module):
    """MinAtar's hand-designed encoder (its DQN baseline): conv 3x3 with 16 channels, ReLU, a 128-unit layer."""

    def __init__(self, observation_space, features_dim: int = 128):
        super().__init__()
        c, h, w = observation_space.shape
        self.features_dim = features_dim
        self.network = nn.Sequential(nn.Conv2d(c, 16, 3), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(16 * (h - 2) * (w - 2), features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.network(observations)


@dataclass
class RLOptions:
    """What `hwnas search --task rl` takes: the environment, the image space, PPO steps (the search and each
    retraining run the same number), retraining seeds, and optionally a latency budget for the derived encoder."""

    env: str = "MinAtar/Breakout-v1"
    space: str = "nb201:C=4,N=1"
    features_dim: int = 64
    steps: int = 20_000
    search_steps: int | None = None  # default: `steps`
    seeds: tuple[int, ...] = (0, 1, 2)
    seed: int = 0
    eval_episodes: int = 10
    n_envs: int = 8  # environments stepped together: one batched encoder forward serves all of them
    n_steps: int = 128  # per environment per rollout
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 1e-3
    budget_ms: float | None = None
    backend: str = "onnxruntime-cpu"
    threads: int = 1
    protocol: str = "quick"
    profile_samples: int = 20
    predictor: str = "lookup"
    run_dir: str | Path = "runs/rl"
    store_url: str | None = None

    def check(self) -> None:
        for name, value, least in (("steps", self.steps, 64), ("eval_episodes", self.eval_episodes, 1),
                                   ("features_dim", self.features_dim, 1), ("n_steps", self.n_steps, 8),
                                   ("n_envs", self.n_envs, 1), ("batch_size", self.batch_size, 2), ("n_epochs", self.n_epochs, 1),
                                   ("profile_samples", self.profile_samples, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise HwnasError(f"{name} {quote(value)} is not accepted; give a whole number >= {least}")
        if self.budget_ms is not None and not (math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise HwnasError(f"budget {quote(self.budget_ms)} ms is not accepted; give a finite positive number")
        if not self.seeds:
            raise HwnasError("give at least one retraining seed")


def make_agent(o: RLOptions, extractor: type[nn.Module], extractor_kwargs: dict[str, Any], seed: int):
    """PPO on `o.env` with the given features extractor; the same settings for every encoder."""
    _, _, sb3 = _rl_modules()
    from stable_baselines3.common.env_util import make_vec_env

    torch.manual_seed(seed)
    env = make_vec_env(lambda: make_env(o.env), n_envs=o.n_envs, seed=seed)
    policy_kwargs = {"features_extractor_class": extractor, "features_extractor_kwargs": extractor_kwargs,
                     "net_arch": [], "share_features_extractor": True}
    return sb3.PPO("MlpPolicy", env, n_steps=o.n_steps, batch_size=o.batch_size, n_epochs=o.n_epochs,
                   learning_rate=o.learning_rate,
                   ent_coef=0.01, policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0)


def evaluate_agent(agent, o: RLOptions, episodes: int, seed: int) -> float:
    """Mean return over `episodes` episodes (stochastic policy, as trained) on fresh environments."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(make_env(o.env))
    env.reset(seed=10_000 + seed)
    mean, _ = evaluate_policy(agent, env, n_eval_episodes=episodes, deterministic=False)
    return float(mean)


def search_encoder(o: RLOptions, reporter: Reporter | None = None, evaluate: bool = True
                   ) -> tuple[Any, Any, dict[str, Any]]:
    """Train PPO with the supernet encoder; returns (space, architecture logits after training, record); with
    `evaluate`, the record has the supernet agent's mean return over `o.eval_episodes` episodes."""
    report = reporter_or_null(reporter)
    agent = make_agent(o, SupernetEncoder, {"space_spec": o.space, "features_dim": o.features_dim, "seed": o.seed},
                       o.seed)
    encoder = agent.policy.features_extractor
    start = encoder.logits().detach().clone()
    started = time.perf_counter()
    agent.learn(total_timesteps=o.search_steps or o.steps)
    alpha = encoder.logits().detach().clone()
    record = {"search_steps": o.search_steps or o.steps, "search_seconds": round(time.perf_counter() - started, 2),
              "alpha_change": float((alpha - start).abs().max()),
              "search_return": evaluate_agent(agent, o, o.eval_episodes, o.seed) if evaluate else None}
    report.message(f"rl-darts search: {record['search_steps']} steps in {record['search_seconds']} s, architecture "
                   f"logits moved {record['alpha_change']:.3g} at most, return of the supernet agent "
                   f"{record['search_return']}")
    return encoder.space, alpha, record


def _choose(o: RLOptions, space, alpha, shape, report) -> tuple[Any, dict[str, Any]]:
    """The derived cell: argmax of alpha, or under a budget the measured-within-budget one (profile, fit, repair)."""
    if o.budget_ms is None:
        return space.derive(alpha), {}
    backend = get_backend(o.backend, threads=o.threads)
    store = open_store(o.store_url, Path(o.run_dir), readonly=False)
    protocol = TimingProtocol.named(o.protocol)
    profile_space(space, backend, store, o.profile_samples, seed=o.seed, input_shape=shape, protocol=protocol,
                  reporter=report)
    predictor = resolve_cost_predictor(o.predictor, "latency_ms", space, shape, backend, store, o.seed)
    cost = HardwareCost(space, "latency_ms", o.budget_ms, predictor=predictor)
    result = discretise_and_verify(space, alpha, [cost], backend=backend, store=store, input_shape=shape,
                                   protocol=protocol, reporter=report)
    return result.arch, {"within_budget": result.within_budget, "measured": result.measured,
                         "predicted": result.predicted, "note": result.note, "store": store.url}


def compare_encoders(o: RLOptions, space, arch, report) -> dict[str, dict[str, Any]]:
    """Retrain the derived encoder from scratch and the baseline, same seeds and steps; returns per encoder the
    returns per seed, their mean and std."""
    encoders = {"derived": (CellEncoder, {"space_spec": space.spec, "arch": space.to_string(arch),
                                          "features_dim": o.features_dim}),
                "baseline": (MinAtarBaselineEncoder, {"features_dim": 128})}
    out = {}
    for name, (extractor, kwargs) in encoders.items():
        returns = []
        for seed in o.seeds:
            agent = make_agent(o, extractor, kwargs, seed)
            agent.learn(total_timesteps=o.steps)
            returns.append(evaluate_agent(agent, o, o.eval_episodes, seed))
        out[name] = {"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
                     "encoder": agent.policy.features_extractor}
        report.message(f"{name} encoder: return {out[name]['mean']:.2f} ± {out[name]['std']:.2f} over seeds "
                       f"{list(o.seeds)} ({o.steps} steps each)")
    return out


def rl_search(options: RLOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """RL-DARTS end to end (see the module docstring); writes RUN_DIR/rl.json and returns it as a dict."""
    o, report = options, reporter_or_null(reporter)
    o.check()
    make_env(o.env).close()  # a bad id fails before any training
    space, alpha, record = search_encoder(o, report)
    shape = (int(make_env(o.env).observation_space.shape[0]), IMAGE_SIDE, IMAGE_SIDE)
    arch, budget = _choose(o, space, alpha, shape, report)
    report.message(f"derived cell: {space.to_string(arch)}")
    compared = compare_encoders(o, space, arch, report)
    backend = get_backend(o.backend, threads=o.threads)
    protocol = TimingProtocol.named(o.protocol)
    for name, row in compared.items():
        encoder = row.pop("encoder")
        if name == "derived" and budget.get("measured"):  # measured by the budget machinery already
            row["latency_ms"] = budget["measured"]["latency_ms"]
        elif name == "derived":
            row["latency_ms"] = measure_arch(space, arch, backend, shape, protocol=protocol).latency_ms
        else:
            row["latency_ms"] = backend.measure(encoder, shape, 1, protocol).latency_ms
        row["params"] = sum(p.numel() for p in encoder.parameters())
    out = {"task": "rl", "env": o.env, "space": space.spec, "arch": space.to_string(arch), "search": record,
           "budget_ms": o.budget_ms, "budget": budget, "compared": compared, "device": backend.device_name(),
           "options": {k: v for k, v in asdict(o).items() if k != "run_dir"}}
    with atomic_write(Path(o.run_dir) / "rl.json") as f:
        f.write(json.dumps(out, indent=2, default=str))
    return out
