"""The one timer (:mod:`unmask.timing`): it times the engine the job runs, at the job's batch
size, autograd separately; a measurement is taken once per model, engine, shape, batch and
thread count (memory, and ``UNMASK_CACHE_DIR`` across processes); the command line's start-up
pays no forward pass when one exists. Times themselves are never asserted (a loaded machine)."""

from __future__ import annotations

import pytest
import torch
from test_execution import _net_model

from unmask import onnx_engine, timing
from unmask.cli import main


class _Calls:
    """Counts the images the model sees, by path: scoring (no gradients) or autograd."""

    def __init__(self, model) -> None:
        self.scoring: list[int] = []
        self.autograd: list[int] = []
        model.register_forward_pre_hook(self)  # a pre-hook on the classifier keeps fast paths

    def __call__(self, module, args) -> None:
        (self.autograd if torch.is_grad_enabled() else self.scoring).append(args[0].shape[0])


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("UNMASK_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_scoring_time_is_measured_once_per_engine_batch_and_threads(cache, monkeypatch):
    model = _net_model().fast("channels_last")
    calls = _Calls(model)
    copies: list[int] = []
    real = model._fast_net
    model._fast_net = lambda z, copy_only=False: copies.append(1) or real(z, copy_only)
    first = timing.scoring_seconds(model, (3, 32, 32), batch=8)
    assert first > 0 and calls.scoring == [8, 8, 8]  # a warm-up, then the best of 2
    assert copies and calls.autograd == []  # the scoring path: the engine, not model(x)
    assert timing.scoring_seconds(model, (3, 32, 32), batch=8) == first
    assert calls.scoring == [8, 8, 8]  # remembered
    timing.scoring_seconds(model, (3, 32, 32), batch=4)
    assert calls.scoring[3:] == [4, 4, 4]  # another batch size: another time
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2 if old != 2 else 1)
        timing.scoring_seconds(model, (3, 32, 32), batch=8)
    finally:
        torch.set_num_threads(old)
    assert len(calls.scoring) == 9  # another thread count
    model.fast("eager")
    timing.scoring_seconds(model, (3, 32, 32), batch=8)
    assert len(calls.scoring) == 12  # another engine


def test_auto_is_timed_as_the_engine_it_runs(cache, monkeypatch):
    """Under "auto" the key holds the engine it runs now: a graph cached later (an export for
    a long job) is timed again, as ONNX Runtime."""
    model = _net_model().fast("auto")
    calls = _Calls(model)
    assert timing.scoring_engine(model) == "channels_last"
    timing.scoring_seconds(model, (3, 24, 24), batch=4)
    monkeypatch.setattr(onnx_engine, "cached", lambda *a: True)
    assert timing.scoring_engine(model) == "onnx"
    assert "|onnx|" in timing.model_key(model, (3, 24, 24), timing.scoring_engine(model))
    monkeypatch.setattr(model, "infer", lambda x: calls.scoring.append(-1) or x[:, :3, 0, 0])
    timing.scoring_seconds(model, (3, 24, 24), batch=4)
    assert calls.scoring[-3:] == [-1, -1, -1]


def test_another_process_reads_the_time_from_the_cache_dir(cache):
    timing.scoring_seconds(_net_model(), (3, 24, 24), batch=4)
    timing.autograd_seconds(_net_model(), (3, 24, 24), batch=2)
    assert (cache / "model_times.json").is_file()
    other = _net_model()  # a new object, same model: as in another process
    calls = _Calls(other)
    t = timing.measure(other, 24, batch=4, autograd_batch=2)
    assert calls.scoring == [] and calls.autograd == []
    assert 0 < t.forward <= t.backward


def test_nothing_is_written_without_a_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("UNMASK_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert timing.cache_file("model_times.json") is None
    timing.scoring_seconds(_net_model(), (3, 24, 24), batch=2)
    assert list(tmp_path.iterdir()) == []  # memory only


def test_autograd_time_runs_forward_and_backward_in_the_autograd_mode(cache):
    model = _net_model().fast("channels_last", autograd="channels_last")
    calls = _Calls(model)
    seen: list[bool] = []
    real = model._copy
    model._copy = lambda z: seen.append(z.requires_grad) or real(z)
    timing.autograd_seconds(model, (3, 24, 24), batch=3)
    assert calls.autograd == [3, 3] and calls.scoring == []  # the best of 2
    assert seen == [True, True]  # gradients through the channels-last copy, as jobs run
    model.fast("channels_last")  # autograd "eager": another key
    timing.autograd_seconds(model, (3, 24, 24), batch=3)
    assert calls.autograd == [3, 3, 3, 3]


def test_arguments_are_checked():
    model = _net_model()
    with pytest.raises(ValueError, match="batch"):
        timing.scoring_seconds(model, (3, 24, 24), batch=0)
    with pytest.raises(ValueError, match="shape"):
        timing.scoring_seconds(model, (24, 24))
    with pytest.raises(ValueError, match="repeats"):
        timing.autograd_seconds(model, repeats=0)


def test_batch_size_search_leaves_its_times_for_the_cost_estimate(cache):
    from unmask.tuning import best_batch_size

    model = _net_model()
    calls = _Calls(model)
    best_batch_size(model, (3, 24, 24), candidates=(2, 4), repeats=1)
    seen = len(calls.scoring)
    assert seen == 4  # each candidate: a warm-up and one timed call
    timing.scoring_seconds(model, (3, 24, 24), batch=4)
    assert len(calls.scoring) == seen


def test_cli_start_up_times_once(monkeypatch, tmp_path, capsys, cache):
    """Two ``explain`` runs with the same model: the second one's cost line measures nothing
    (its forwards are the job's alone), at the job's batch size."""
    import unmask.models

    monkeypatch.chdir(tmp_path)
    model = _net_model().fast("channels_last")
    calls = _Calls(model)
    monkeypatch.setattr(unmask.models, "load_model", lambda *a, **k: model)
    argv = ["explain", "--example", "coffee", "--size", "32", "--no-progress", "--json"]
    argv += ["--param", "patch_size=16", "--param", "stride=16", "--batch-size", "5"]
    assert main(argv) == 0
    first = list(calls.scoring)
    assert "in batches of 5 through channels_last" in capsys.readouterr().err
    assert main(argv) == 0
    second = calls.scoring[len(first) :]
    assert first[:3] == [5, 5, 5] and second == first[3:]  # the timing: once, first
