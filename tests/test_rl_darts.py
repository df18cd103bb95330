"""RL-DARTS: a short PPO run with a DARTS supernet encoder on MinAtar moves the architecture parameters, and the
derived cell builds, acts as the encoder and exports to ONNX with parity."""
import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError

pytest.importorskip("stable_baselines3", reason="RL search needs stable-baselines3: install .[rl]")
pytest.importorskip("minatar", reason="RL search needs minatar: install .[rl]")
pytest.importorskip("gymnasium", reason="RL search needs gymnasium: install .[rl]")

from hwnas.search.rl_darts import (
    CellEncoder,
    MinAtarBaselineEncoder,
    RLOptions,
    make_env,
    search_encoder,
)

torch.set_num_threads(1)


def test_short_rl_darts_run_moves_alpha_and_derives_a_cell_that_builds_and_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is a core dependency")
    from hwnas.conversion import export_onnx

    options = RLOptions(env="MinAtar/Breakout-v1", space="nb201:C=4,N=1", features_dim=16, steps=2048,
                        n_envs=8, n_steps=64, batch_size=256, n_epochs=1, seed=0, run_dir=tmp_path)
    space, logits, record = search_encoder(options, evaluate=False)
    assert record["alpha_change"] > 1e-3  # PPO's updates reached the architecture parameters
    arch = space.derive(logits)
    env = make_env(options.env)
    encoder = CellEncoder(env.observation_space, space.spec, space.to_string(arch), features_dim=16).eval()
    obs, _ = env.reset(seed=0)
    x = torch.as_tensor(obs)[None]
    assert x.shape == (1, 4, 12, 12) and encoder(x).shape == (1, 16)
    export_onnx(encoder.network, x.shape[1:], tmp_path / "encoder.onnx", exporter="torchscript")
    session = ort.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], encoder.network(x).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    assert MinAtarBaselineEncoder(env.observation_space)(x).shape == (1, 128)


def test_unknown_environment_is_refused_in_one_line():
    with pytest.raises(HwnasError, match="accepted: MinAtar ids") as e:
        make_env("CartPole-v1")
    assert "\n" not in str(e.value)
    with pytest.raises(HwnasError, match="accepted: MinAtar ids"):
        make_env("MinAtar/Pong-v1")
