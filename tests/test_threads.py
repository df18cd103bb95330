"""Deliberate thread counts: training respects the user's setting, else leaves one core free; timing is the
backend's own --threads."""
import torch

from hwnas.threads import training_threads, training_threads_context, usable_cores


def test_training_threads_respect_the_user_then_leave_a_core_free(monkeypatch):
    monkeypatch.setenv("HWNAS_TRAIN_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert training_threads() == (3, "$HWNAS_TRAIN_THREADS")
    monkeypatch.delenv("HWNAS_TRAIN_THREADS")
    assert training_threads() == (2, "$OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "none")  # not a count: ignored
    n, why = training_threads()
    assert n == max(1, min(usable_cores() - 1, 8)) and "core" in why


def test_the_training_context_restores_torchs_setting(monkeypatch):
    monkeypatch.setenv("HWNAS_TRAIN_THREADS", "2")
    before = torch.get_num_threads()
    with training_threads_context() as n:
        assert n == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
