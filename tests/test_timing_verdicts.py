"""Verdicts against a budget on a noisy machine: close calls are timed again, and a stored measurement is reused
only when it was timed at least as carefully as the verdict asks."""
from __future__ import annotations

from dataclasses import asdict

from hwnas.profilers.timing import RETIME_ABOVE, TimingProtocol, settle_near_budget


def sessions(*figures):
    """A measure() that returns these figures in turn (a number is a latency), and counts the calls."""
    queue = [f if isinstance(f, dict) else {"latency_ms": f} for f in figures]
    calls = []

    def measure():
        calls.append(1)
        return queue.pop(0)

    return measure, calls


def test_a_clear_verdict_is_timed_once():
    measure, calls = sessions(0.5, 9.0, 9.0)
    m, n = settle_near_budget(measure, {"latency_ms": 1.0})
    assert (m["latency_ms"], n, len(calls)) == (0.5, 1, 1)


def test_a_close_or_over_verdict_takes_the_fastest_of_three_sessions():
    # a slow session (1.3) would call the model over budget; the other two say it fits
    measure, calls = sessions(1.3, 0.97, 0.98)
    m, n = settle_near_budget(measure, {"latency_ms": 1.0})
    assert (m["latency_ms"], n, len(calls)) == (0.97, 3, 3)
    # just above the "near" share counts as close
    measure, _ = sessions(RETIME_ABOVE + 0.01, 0.99, 0.99)
    assert settle_near_budget(measure, {"latency_ms": 1.0})[1] == 3


def test_the_tightest_budget_decides_closeness():
    measure, _ = sessions({"latency_ms": 0.2, "energy_mj": 0.99}, {"latency_ms": 0.2, "energy_mj": 0.9},
                              {"latency_ms": 0.2, "energy_mj": 0.95})
    m, n = settle_near_budget(measure, {"latency_ms": 1.0, "energy_mj": 1.0})
    assert n == 3 and m == {"latency_ms": 0.2, "energy_mj": 0.9}


def test_without_budgets_nothing_is_repeated():
    measure, calls = sessions(5.0, 1.0)
    assert not calls
    assert settle_near_budget(measure, None) == ({"latency_ms": 5.0}, 1) and len(calls) == 1


def test_a_stored_quick_measurement_does_not_satisfy_a_thorough_verdict():
    quick, default, thorough = TimingProtocol.quick(), TimingProtocol(), TimingProtocol.thorough()
    assert not thorough.satisfied_by(asdict(quick)) and not default.satisfied_by(asdict(quick))
    assert thorough.satisfied_by(asdict(thorough)) and default.satisfied_by(asdict(thorough))
    assert quick.satisfied_by(asdict(default))
    assert not default.satisfied_by(None) and not default.satisfied_by({"warmup_runs": 50})
