from hwnas.profilers.energy import RaplMeter, analytical_energy_mj, best_meter


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
