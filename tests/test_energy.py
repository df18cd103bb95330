import json

import numpy as np
import pytest
from click.testing import CliRunner

from hwnas.cli import cli
from hwnas.profilers import TimingProtocol, get_backend, profile_space
from hwnas.profilers.energy import AnalyticalMeter, RaplMeter, analytical_energy_mj, best_meter, meter_report
from hwnas.spaces import get_space
from hwnas.store import Store


def write_zone(root, name, energy_uj, max_uj=1_000_000):
    zone = root / name
    zone.mkdir(exist_ok=True)
    (zone / "energy_uj").write_text(str(energy_uj))
    (zone / "max_energy_range_uj").write_text(str(max_uj))


def test_rapl_sums_packages_and_handles_wraparound(tmp_path):
    write_zone(tmp_path, "intel-rapl:0", 900_000)
    write_zone(tmp_path, "intel-rapl:1", 10_000)
    meter = RaplMeter(tmp_path)
    assert meter.available()
    start = meter.read_mj()
    write_zone(tmp_path, "intel-rapl:0", 100_000)  # wrapped: 900k -> 1M -> 100k is 200k uJ
    write_zone(tmp_path, "intel-rapl:1", 60_000)
    assert meter.read_mj() - start == 250.0


def test_rapl_explains_why_not(tmp_path):
    meter = RaplMeter(tmp_path)
    assert not meter.available() and "no RAPL zones" in meter.why_unavailable()
    assert best_meter(("nosuch",)) is None


def test_analytical_estimate_grows_with_work():
    small, large = analytical_energy_mj(1e6, 1e5), analytical_energy_mj(1e8, 1e7)
    assert 0 < small < large and abs(large / small - 100) < 1e-9


# --- issue 16: meters, devices, energy end to end ------------------------------------------------------------
TINY = TimingProtocol(warmup_runs=1, min_runs=3, max_runs=3, max_seconds=0.2)
NB = "nb201:C=4,N=1"


def test_idle_power_is_subtracted_and_the_reading_says_so(tmp_path):
    write_zone(tmp_path, "intel-rapl:0", 1_000)
    meter = RaplMeter(tmp_path)

    def work():  # the package counter advances by 5 mJ during the span; while idle it did not move
        write_zone(tmp_path, "intel-rapl:0", 6_000)
        return "done"

    result, reading = meter.measure(work)
    assert result == "done" and reading.method == "rapl" and reading.idle_w == 0.0
    assert reading.idle_subtracted and reading.energy_mj == pytest.approx(5.0)
    assert reading.per_run(5)["energy_mj"] == pytest.approx(1.0)


def test_devices_json_lists_the_analytical_meter_and_why_nvml_and_rapl_are_not_usable():
    r = CliRunner().invoke(cli, ["devices", "--json"])
    assert r.exit_code == 0, r.output
    meters = {m["meter"]: m for m in json.loads(r.stdout)["energy_meters"]}
    assert meters["analytical"]["available"] and meters["analytical"]["method"] == "analytical-45nm"
    for name in ("nvml", "nvml-power", "rapl"):
        assert meters[name]["available"] or meters[name]["why"], meters[name]
    assert {m["meter"] for m in meter_report()} >= {"analytical", "nvml", "nvml-power", "rapl", "spike-ops"}
    assert AnalyticalMeter().estimate_mj(1e6, 0, batch=2) == pytest.approx(2 * 4.6e-3)  # 1e6 MACs x 4.6 pJ, in mJ


@pytest.fixture(scope="module")
def energy_store(tmp_path_factory):
    """14 tiny nb201 cells measured on torch-cpu (energy: a readable counter, else the analytical estimate)."""
    folder = tmp_path_factory.mktemp("energy")
    store = Store(f"sqlite:///{folder / 'measurements.db'}")
    profile_space(get_space(NB), get_backend("torch-cpu"), store, 14, input_shape=(1, 8, 8), protocol=TINY)
    return folder, store


def test_energy_predictors_are_fitted_from_the_store(energy_store):
    from hwnas.predictors import fit_from_store

    _, store = energy_store
    for kind in ("lookup", "ridge", "mlp"):  # `hwnas fit --target energy` takes every kind; these keep the test short
        predictor, _ = fit_from_store(store, NB, input_shape=(1, 8, 8), target="energy_mj", predictor=kind,
                                            settings={"epochs": 30} if kind == "mlp" else None)
        meta = predictor.metadata
        assert meta["target"] == "energy_mj" and meta["unit"] == "mJ" and meta["energy_methods"], kind
        assert np.all(np.asarray(predictor.predict(_codes(predictor, store))) > 0), kind


def _codes(predictor, store):
    from hwnas.predictors import encode_archs

    space = get_space(NB)
    archs = [space.from_string(m.arch) for m in store.measurements()[:3]]
    return encode_archs(space, archs, predictor.encoding, (1, 8, 8))


def test_search_under_an_energy_budget_alone_is_measured_within_it(energy_store):
    folder, store = energy_store
    energies = sorted(m.energy_mj for m in store.measurements())
    budget = float(np.median(energies))
    r = CliRunner().invoke(cli, ["search", "--budget-mj", str(budget), "--space", NB, "--backend", "torch-cpu",
                                 "--epochs", "1", "--retrain-epochs", "0", "--limit", "100", "--protocol", "quick",
                                 "--run-dir", str(folder), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["within_budget"] and out["measured"]["energy_mj"] <= budget
    assert set(out["budgets"]) == {"energy_mj"}
