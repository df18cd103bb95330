"""The forecasting task end to end: `hwnas search --task forecast` (growing search on macrodata, found cell vs
LSTM and GRU by test MSE), and the same under a latency budget: the rnn-cell space profiled with ONNX Runtime at a
fixed window length, a cost predictor fitted on it, the found cell measured within the budget."""
import json
import math

import pytest
import torch
from click.testing import CliRunner

from hwnas.cli import cli as hwnas_cli

pytest.importorskip("statsmodels", reason="the forecasting task needs statsmodels: install .[timeseries]")
torch.set_num_threads(1)


def test_cli_forecast_compares_the_found_cell_with_lstm_and_gru(tmp_path):
    result = CliRunner().invoke(hwnas_cli, ["search", "--task", "forecast", "--space", "rnn-cell:H=8,nodes=2",
                                            "--epochs", "2", "--retrain-epochs", "2", "--seeds", "2",
                                            "--run-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert out == json.loads((tmp_path / "forecast.json").read_text())
    assert out["strategy"] == "growing" and out["space"].startswith("rnn-cell:H=8,nodes=2")
    assert set(out["compared"]) == {"found", "lstm", "gru"}
    for row in out["compared"].values():
        assert len(row["test_mse"]) == 2 and all(math.isfinite(v) and v > 0 for v in row["test_mse"])
        assert row["test_mse_std"] >= 0 and "latency_ms" not in row  # no budget: nothing measured
    # LSTM and GRU have the searched cell's hidden size: 4 and 3 gates of (input + hidden) maps, plus the head
    features, hidden = 4, 8
    assert out["compared"]["lstm"]["params"] == 4 * hidden * (features + hidden + 2) + (hidden + 1) * 4
    assert out["compared"]["gru"]["params"] == 3 * hidden * (features + hidden + 2) + (hidden + 1) * 4
    assert [kind for _, kind, _ in out["search"]["events"]].count("grow") == 1


def test_forecast_search_under_a_latency_budget_profiles_predicts_and_measures(tmp_path):
    from hwnas.search.forecast import ForecastOptions, search_forecast
    from hwnas.store import Store

    options = ForecastOptions(space="rnn-cell:H=8,nodes=2", epochs=2, retrain_epochs=1, budget_ms=50.0,
                              profile_samples=5, protocol="quick", seeds=(0,), run_dir=tmp_path)
    out = search_forecast(options)
    search = out["search"]
    assert search["within_budget"] and 0 < search["measured"]["latency_ms"] <= 50.0
    assert search["arch"] == out["arch"]
    assert all(row["latency_ms"] > 0 for row in out["compared"].values())
    stored = Store(tmp_path / "measurements.db").measurements(space=out["space"])
    assert len(stored) >= 5 and {tuple(m.input_shape) for m in stored} == {(8, 4)}


def test_bad_forecast_options_are_refused_in_one_line(tmp_path):
    result = CliRunner().invoke(hwnas_cli, ["search", "--task", "rl", "--strategy", "gumbel", "--run-dir",
                                            str(tmp_path)])
    assert result.exit_code == 2 and "--strategy gumbel is not accepted" in result.output
    from hwnas.errors import HwnasError
    from hwnas.search.forecast import ForecastOptions, search_forecast

    with pytest.raises(HwnasError, match="budget .* is not accepted"):
        search_forecast(ForecastOptions(budget_ms=-1.0, run_dir=tmp_path))
    assert not (tmp_path / "forecast.json").exists()
