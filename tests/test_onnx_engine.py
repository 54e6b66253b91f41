"""The ONNX Runtime engine (execution "onnx" / "auto"): equal to eager within the channels_last
tolerances on every kind of black-box work, exported once and cached safely, never stale, and
every fault a single warning (fall back) or a clear error.

Real exports are few (each costs seconds): one of the small network for the whole module (the
graph's bytes are reused by the fault tests through a stand-in exporter), one after a weight
change, one for ``unmask models --prepare``, two in the two-process test.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from test_execution import RTOL, _close, _images, _net_model

from unmask import Classifier, onnx_engine
from unmask.cli import main
from unmask.explainers.lime import Lime
from unmask.explainers.occlusion import Occlusion
from unmask.explainers.rise import Rise
from unmask.explainers.scorecam import ScoreCAM
from unmask.metrics import CAUC
from unmask.metrics.deletion import Deletion, Insertion
from unmask.models import NonFiniteLogits
from unmask.scoring import Scorer

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _fresh_state(monkeypatch, cache: Path) -> None:
    """A cache directory of its own and an empty process memory (graphs, failures, warnings)."""
    monkeypatch.setenv("UNMASK_CACHE_DIR", str(cache))
    monkeypatch.setattr(onnx_engine, "_MEMORY", OrderedDict())
    monkeypatch.setattr(onnx_engine, "_FAILED", {})
    monkeypatch.setattr(onnx_engine, "_WARNED", set())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The small network's graph, exported once for real: (cache dir, key, bytes)."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as mp:
        _fresh_state(mp, cache)
        model = _net_model().fast("onnx")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback, no cache warning
            model.infer(_images(2))
        key = onnx_engine.graph_key(model.logits_net(), (3, 24, 24), torch.float32)
        data = onnx_engine._path(key).read_bytes()
    return cache, key, data


@pytest.fixture
def engine(monkeypatch, tmp_path, exported):
    """A fresh cache dir and memory; ``_export`` replaced by a counting stand-in that returns
    the small network's real graph (so the fault tests export nothing for real)."""
    _fresh_state(monkeypatch, tmp_path / "cache")
    calls: list[str] = []

    def fake_export(net, shape, dtype):
        calls.append(onnx_engine.graph_key(net, shape, dtype))
        return exported[2]

    monkeypatch.setattr(onnx_engine, "_export", fake_export)
    return calls


def _logits(model, x):
    with torch.inference_mode():
        return model.infer(x)


# --- equal to eager -------------------------------------------------------------------------


def test_blackbox_methods_metrics_equal_eager(monkeypatch, exported):
    """Logits within 1e-4, occlusion / RISE / LIME / Score-CAM maps within 1e-3 (relative to the
    largest |value|), deletion / insertion / CAUC values within 1e-5 of eager float32."""
    _fresh_state(monkeypatch, exported[0])  # the graph is on disk: loaded and checked, no export
    monkeypatch.setattr(onnx_engine, "_export", lambda *a: pytest.fail("exported again"))
    model, x = _net_model(), _images(2, 32)

    def run():
        occ = Occlusion(model, patch_size=8, stride=4, batch_size=7).explain(x, 1).saliency
        rise = Rise(model, masks=40, s=4, batch_size=16, seed=0).explain(x[:1], 2).saliency
        lime = Lime(model, samples=40, n_segments=8, seed=0).explain(x[:1], 0).saliency
        cam = ScoreCAM(model, layer="2", batch_size=5).explain(x, 1).saliency
        curves = [m(max_steps=8, batch_size=4)(model, x, occ, 1) for m in (Deletion, Insertion)]
        cauc = CAUC(batch_size=4)(model, x, occ, [{1}, {1, 2}], competitors=[{0}, {0}])
        values = torch.cat([*(torch.as_tensor(c).flatten() for c in curves), cauc.flatten()])
        return _logits(model, x), occ, rise, lime, cam, values

    eager = run()
    model.fast("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fast = run()
    assert isinstance(model._onnx(model.preprocess(x)), onnx_engine.OnnxRunner)
    assert _close(fast[0], eager[0], RTOL)
    for got, want in zip(fast[1:5], eager[1:5], strict=True):
        assert _close(got, want, 1e-3)
    assert float((fast[5].double() - eager[5].double()).abs().max()) < 1e-5


BENCH_TOML = """
name = "engine"

[model]
name = "test_onnx_engine:small_{execution}"
size = 32

[data]
path = "{data}"

[[methods]]
method = "occlusion"
params = {{ patch_size = 8, stride = 8, batch_size = 8 }}

[[methods]]
method = "rise"
params = {{ masks = 24, s = 4, batch_size = 8 }}

[[metrics]]
metric = "deletion"
params = {{ max_steps = 8, batch_size = 8 }}
"""


def _bench_data(folder: Path) -> Path:
    """Two 32 x 32 images with labels: a bench data set."""
    import numpy as np
    from PIL import Image

    data = folder / "data"
    data.mkdir()
    for i, img in enumerate(_images(2, 32)):
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(data / f"img{i}.png")
    (data / "labels.csv").write_text("file,class_index,name\nimg0.png,1,b\nimg1.png,2,c\n")
    return data


def test_bench_run_equals_eager(tmp_path, monkeypatch, exported):
    """A bench run (occlusion, RISE, deletion) with the model in "onnx" stores the maps and
    values of a run with the model eager, within the tolerances."""
    from unmask.bench import Store, load_plan, run

    _fresh_state(monkeypatch, exported[0])
    monkeypatch.setattr(onnx_engine, "_export", lambda *a: pytest.fail("exported again"))
    data = _bench_data(tmp_path)
    stores = {}
    for execution in ("eager", "onnx"):
        config = tmp_path / f"{execution}.toml"
        config.write_text(BENCH_TOML.format(execution=execution, data=data))
        stores[execution] = tmp_path / f"{execution}.sqlite"
        run(load_plan(config, allow_code=True), stores[execution], progress=False, threads=1)
    eager, fast = Store.open(stores["eager"]), Store.open(stores["onnx"])
    assert len(eager.units()) == len(fast.units()) == 4
    for unit in eager.units():
        want = eager.map(unit["file"], unit["run"])
        got = fast.map(unit["file"], unit["run"])
        assert _close(torch.as_tensor(got), torch.as_tensor(want), 1e-3)
    want, got = eager.values("deletion[max_steps=8]"), fast.values("deletion[max_steps=8]")
    assert want.keys() == got.keys() and len(want) == 4
    assert all(abs(got[k] - want[k]) < 1e-5 for k in want)


def small_eager():
    """The bench's model factory (``test_onnx_engine:small_eager``)."""
    return _net_model()


def small_onnx():
    """The bench's model factory (``test_onnx_engine:small_onnx``)."""
    return _net_model().fast("onnx")


def small_auto():
    """The bench's model factory (``test_onnx_engine:small_auto``)."""
    return _net_model().fast("auto")


def test_bench_cost_line_times_the_engine_the_units_run(engine, tmp_path, monkeypatch, capsys):
    """``bench run``'s cost line comes after the engine policy: a job that repays the export
    exports once (the run's workers then read the graph) and the line times ONNX Runtime at
    the methods' batch size, not the channels-last copy the model started with."""
    config = tmp_path / "auto.toml"
    config.write_text(BENCH_TOML.format(execution="auto", data=_bench_data(tmp_path)))
    monkeypatch.setattr(onnx_engine, "EXPORT_AFTER", 10)
    argv = ["bench", "run", str(config), "--store", str(tmp_path / "s.sqlite"), "--allow-code"]
    assert main([*argv, "--no-progress", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "in batches of 8 through onnx, measured here" in err, err
    assert len(engine) == 1  # one export, before the cost line; the run reused it


def test_threads_follow_torch(engine):
    model = _net_model().fast("onnx")
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _logits(model, _images(2))
            run = model._onnx(model.preprocess(_images(2)))
            assert run.session.get_session_options().intra_op_num_threads == threads
    finally:
        torch.set_num_threads(old)
    assert len(engine) == 1  # a thread change makes a new session, never a new export


# --- export once, never stale ---------------------------------------------------------------


def test_exported_once_then_read_from_disk(engine, tmp_path):
    x = _images(3)
    first = _logits(_net_model().fast("onnx"), x)
    assert len(engine) == 1
    files = list((tmp_path / "cache" / "onnx").iterdir())
    assert [f.suffix for f in files] == [".onnx"]  # no temporary file left
    onnx_engine._MEMORY.clear()  # another process: the file is read, not exported
    again = _logits(_net_model().fast("onnx"), x)
    assert len(engine) == 1
    assert torch.equal(first, again)


def test_weight_changes_are_never_stale(monkeypatch, tmp_path):
    """In-place change: a new graph (a real export) with the new logits. load_state_dict,
    .to(float64), a deepcopy randomised by the sanity checks: other keys, nothing reused."""
    _fresh_state(monkeypatch, tmp_path)
    model, x = _net_model().fast("onnx"), _images(2)
    before = _logits(model, x)
    key = onnx_engine.graph_key(model.logits_net(), (3, 24, 24), torch.float32)
    with torch.no_grad():
        model.net[-1].bias.add_(1.0)
    after = _logits(model, x)
    assert _close(after, before + 1.0)
    assert len(list((tmp_path / "onnx").iterdir())) == 2
    net = model.logits_net()
    changed = onnx_engine.graph_key(net, (3, 24, 24), torch.float32)
    assert changed != key
    other = _net_model(seed=5)
    model.net.load_state_dict(other.net.state_dict())
    assert onnx_engine.graph_key(net, (3, 24, 24), torch.float32) not in (key, changed)
    assert not onnx_engine.cached(net, (3, 24, 24), torch.float32)
    assert not onnx_engine.cached(net, (3, 24, 24), torch.float64)
    randomised = copy.deepcopy(_net_model())
    with torch.no_grad():
        randomised.net[0].weight.normal_()
    assert not onnx_engine.cached(randomised.logits_net(), (3, 24, 24), torch.float32)


# --- the policy -------------------------------------------------------------------------------


def test_auto_never_exports_and_uses_a_cached_graph(engine, monkeypatch):
    model, x = _net_model().fast("auto"), _images(2)
    key = onnx_engine.graph_key
    monkeypatch.setattr(onnx_engine, "graph_key", lambda *a: pytest.fail("hashed the weights"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        eager_like = _logits(model, x)  # nothing cached: channels_last, no export, no hash
    assert engine == []
    assert model._onnx(model.preprocess(x)) is None
    assert onnx_engine.engine_for(model, 10) == "channels_last"
    assert onnx_engine.engine_for(model, onnx_engine.EXPORT_AFTER) == "onnx"
    monkeypatch.setattr(onnx_engine, "graph_key", key)
    assert onnx_engine.prepare(model) is not None  # export now (cached on disk)
    assert len(engine) == 1
    assert onnx_engine.engine_for(model, 0) == "onnx"  # cached: any job uses it
    assert isinstance(model._onnx(model.preprocess(x)), onnx_engine.OnnxRunner)
    assert _close(_logits(model, x), eager_like)
    assert onnx_engine.engine_for(_net_model().fast("eager"), 10**6) == "eager"
    with pytest.raises(ValueError, match="evaluations"):
        onnx_engine.engine_for(model, -1)


def test_cli_explain_exports_only_when_the_job_repays_it(tmp_path, monkeypatch, capsys):
    """A short job on a fresh cache exports nothing (and says how to); a long one exports,
    caches, and a later short job uses the cached graph."""
    import unmask.models

    _fresh_state(monkeypatch, tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    exports: list[int] = []
    real = onnx_engine._export
    monkeypatch.setattr(onnx_engine, "_export", lambda *a: exports.append(1) or real(*a))
    monkeypatch.setattr(unmask.models, "load_model", lambda *a, **k: _net_model().fast("auto"))
    argv = ["explain", "--example", "coffee", "--size", "32", "--no-progress", "--json"]
    short = ["--param", "patch_size=8", "--param", "stride=8"]  # 16 positions
    monkeypatch.setattr("unmask.cli._engine.TIP_AFTER", 10)
    assert main([*argv, *short]) == 0
    assert exports == [] and "--prepare" in capsys.readouterr().err
    monkeypatch.setattr(onnx_engine, "EXPORT_AFTER", 100)
    long = ["--param", "patch_size=2", "--param", "stride=2"]  # 256 positions
    assert main([*argv, *long]) == 0
    assert exports == [1] and len(list((tmp_path / "cache" / "onnx").iterdir())) == 1
    capsys.readouterr()
    assert main([*argv, *short]) == 0
    assert exports == [1] and "--prepare" not in capsys.readouterr().err


def test_cli_models_prepare(tmp_path, monkeypatch, capsys):
    _fresh_state(monkeypatch, tmp_path / "cache")
    assert main(["models", "--prepare", "synthetic_cnn"]) == 0
    out = capsys.readouterr().out
    assert "synthetic_cnn: ONNX graph checked" in out and str(tmp_path / "cache") in out
    from unmask.models import load_model

    model = load_model("synthetic_cnn")  # "auto": the cached graph
    assert model.execution == "auto"
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert isinstance(model._onnx(model.preprocess(x)), onnx_engine.OnnxRunner)
    assert _close(_logits(model, x), model(x).detach())
    code = main(["models", "--prepare", "no_such_model"])
    assert code == 2 and "unknown model" in capsys.readouterr().err


# --- what runs: the picked logits; wrap's default -------------------------------------------


class _Structured(torch.nn.Module):
    """``inner``'s logits returned inside a tuple (features, logits), a dict or a Hugging Face
    ``ImageClassifierOutput``, beside another (B, 8) tensor."""

    def __init__(self, inner: torch.nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, z: torch.Tensor) -> object:
        logits = self.inner(z)
        features = z.flatten(1)[:, :8]
        if self.kind == "tuple":
            return features, logits
        if self.kind == "dict":
            return {"features": features, "logits": logits}
        from transformers.modeling_outputs import ImageClassifierOutput

        return ImageClassifierOutput(logits=logits, hidden_states=(features,))


@pytest.mark.parametrize(("kind", "output"), [("tuple", 1), ("dict", None), ("hf", None)])
def test_tuple_dict_and_model_outputs_export_their_logits(kind, output, monkeypatch, tmp_path):
    """A network returning a tuple, a dict or a ModelOutput runs in ONNX Runtime (its picked
    logits exported for real, no fallback), equal to eager; the pick is part of the key."""
    if kind == "hf":
        pytest.importorskip("transformers")
    _fresh_state(monkeypatch, tmp_path)
    plain = _net_model()
    model = Classifier.wrap(
        _Structured(plain.net, kind),
        input_size=24,
        class_names=["a", "b", "c"],
        name="small",
        output=output,
        execution="onnx",
    )
    x = _images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        got = _logits(model, x)
    assert isinstance(model._onnx(model.preprocess(x)), onnx_engine.OnnxRunner)
    assert _close(got, plain(x).detach())
    assert onnx_engine.cached(model.logits_net(), (3, 24, 24), torch.float32)
    other = Classifier.wrap(
        _Structured(plain.net, kind),
        input_size=24,
        class_names=["a", "b", "c"],
        output=lambda out: out[1] if kind == "tuple" else out["logits"],
    )
    assert not onnx_engine.cached(other.logits_net(), (3, 24, 24), torch.float32)


def test_a_network_that_cannot_pick_its_logits_falls_back_with_one_line(engine):
    """An ambiguous output (two (B, 3) tensors, no output=) cannot be exported: one warning
    saying why, then the eager error of pick_logits on the fallback path."""
    plain = _net_model()

    class Two(torch.nn.Module):
        def forward(self, z):
            logits = plain.net(z)
            return logits, logits * 2

    model = Classifier.wrap(Two(), input_size=24, class_names=["a", "b", "c"], execution="onnx")
    with pytest.warns(RuntimeWarning) as caught, pytest.raises(ValueError, match="cannot tell"):
        _logits(model, _images(2))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "cannot run in ONNX Runtime" in message and "cannot tell which output" in message
    assert "\n" not in message


def test_wrap_defaults_to_auto_and_never_exports(engine):
    model = Classifier.wrap(_net_model().net, input_size=24, class_names=["a", "b", "c"])
    assert model.execution == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = _logits(model, _images(2))
    assert engine == [] and model._onnx(model.preprocess(_images(2))) is None
    assert _close(got, _logits(_net_model(), _images(2)))
    assert (
        Classifier.wrap(_net_model().net, class_names=list("abc"), execution="eager").execution
        == "eager"
    )
    with pytest.raises(ValueError, match="execution"):
        Classifier.wrap(_net_model().net, class_names=list("abc"), execution="fastest")


class _Viewer(torch.nn.Module):
    """A convolution, then ``.view`` of its output: fails on a channels-last tensor."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv(z)
        return self.fc(h.view(h.shape[0], -1))


@pytest.mark.parametrize("execution", ["auto", "onnx"])
def test_a_network_the_channels_last_copy_cannot_run_runs_as_it_is(engine, monkeypatch, execution):
    """Where channels-last is the policy's fallback ("auto" with nothing cached, "onnx" whose
    export failed), a network whose ``.view`` refuses channels-last strides runs as it is
    (one warning, remembered); an explicit "channels_last" keeps its error."""
    monkeypatch.setattr(
        onnx_engine, "_export", lambda *a: (_ for _ in ()).throw(RuntimeError("no export here"))
    )
    x = _images(2)
    eager = Classifier.wrap(_Viewer(), input_size=24, class_names=list("abc"), execution="eager")
    want = _logits(eager, x)
    model = Classifier.wrap(_Viewer(), input_size=24, class_names=list("abc"), execution=execution)
    with pytest.warns(RuntimeWarning) as caught:
        first = _logits(model, x)
        again = _logits(model, x)
    copies = [str(w.message) for w in caught if "channels-last copy" in str(w.message)]
    assert len(copies) == 1 and "running the network as it is" in copies[0]
    assert "view" in copies[0] and "\n" not in copies[0]
    assert torch.equal(first, want) and torch.equal(again, want)
    model.fast("channels_last")
    with pytest.raises(RuntimeError, match="view"):
        _logits(model, x)


def test_a_network_that_fails_by_itself_raises_its_own_error(engine):
    class Broken(torch.nn.Module):
        def forward(self, z):
            raise KeyError("the network's own bug")

    model = Classifier.wrap(Broken(), input_size=24, class_names=list("abc"))
    with pytest.raises(KeyError, match="own bug"):
        _logits(model, _images(2))


# --- faults: one warning or a clear error -----------------------------------------------------


def test_cli_prepare_into_an_unwritable_cache_is_one_line(engine, tmp_path, monkeypatch, capsys):
    import unmask.models

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("UNMASK_CACHE_DIR", str(blocker))
    monkeypatch.setattr(unmask.models, "load_model", lambda *a, **k: _net_model().fast("auto"))
    assert main(["models", "--prepare", "small"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "unmask: error: --prepare: onnx engine: cannot write"
    )


def test_truncated_cache_file_is_exported_again_with_one_warning(engine, tmp_path):
    x = _images(2)
    want = _logits(_net_model().fast("onnx"), x)
    (path,) = (tmp_path / "cache" / "onnx").iterdir()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut mid-write
    onnx_engine._MEMORY.clear()
    with pytest.warns(RuntimeWarning, match="unusable.*exporting it again") as caught:
        got = _logits(_net_model().fast("onnx"), x)
    assert len(caught) == 1 and len(engine) == 2
    assert torch.equal(got, want)
    assert path.stat().st_size == len(onnx_engine._MEMORY[path.stem])  # rewritten whole


def test_cache_dir_that_is_a_file_keeps_the_graph_in_memory(engine, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("UNMASK_CACHE_DIR", str(blocker))
    model, x = _net_model().fast("onnx"), _images(2)
    with pytest.warns(RuntimeWarning, match="cannot write.*kept in memory") as caught:
        got = _logits(model, x)
    assert len(caught) == 1
    assert isinstance(model._onnx(model.preprocess(x)), onnx_engine.OnnxRunner)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        again = _logits(_net_model().fast("onnx"), x)  # memory: no second export or warning
    assert torch.equal(got, again) and len(engine) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_cache_dir(engine, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("UNMASK_CACHE_DIR", str(ro))
    try:
        with pytest.warns(RuntimeWarning, match="cannot write"):
            _logits(_net_model().fast("onnx"), _images(2))
    finally:
        ro.chmod(0o700)


def test_export_failure_falls_back_with_one_warning(engine, monkeypatch):
    def broken(net, shape, dtype):
        raise RuntimeError("Unsupported: data-dependent control flow\nmore detail")

    monkeypatch.setattr(onnx_engine, "_export", broken)
    x = _images(3)
    want = _logits(_net_model().fast("channels_last"), x)
    with pytest.warns(RuntimeWarning) as caught:
        got = _logits(_net_model().fast("onnx"), x)
        again = _logits(_net_model().fast("onnx"), x)  # remembered: no retry, no warning
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "cannot run in ONNX Runtime" in message and "data-dependent" in message
    assert "channels_last" in message and "\n" not in message
    assert torch.equal(got, want) and torch.equal(again, want)


def test_disagreeing_logits_fall_back_with_one_warning(engine, monkeypatch):
    raw = onnx_engine.OnnxRunner.__call__
    monkeypatch.setattr(onnx_engine.OnnxRunner, "__call__", lambda self, z: raw(self, z) * 1.01)
    x = _images(2)
    want = _logits(_net_model().fast("channels_last"), x)
    with pytest.warns(RuntimeWarning, match="differ from eager's") as caught:
        got = _logits(_net_model().fast("onnx"), x)
    assert len(caught) == 1 and torch.equal(got, want)
    assert not any((Path(os.environ["UNMASK_CACHE_DIR"]) / "onnx").glob("*"))  # not cached


def test_a_stale_cached_graph_is_caught_by_the_check(engine, exported, monkeypatch):
    """A file under the key of other weights (e.g. written by a buggy tool): the check at load
    refuses it, one warning, exported again."""
    model = _net_model(seed=3).fast("onnx")
    key = onnx_engine.graph_key(model.logits_net(), (3, 24, 24), torch.float32)
    onnx_engine._path(key).parent.mkdir(parents=True)
    onnx_engine._path(key).write_bytes(exported[2])  # the seed-0 network's graph
    with pytest.warns(RuntimeWarning) as caught:
        _logits(model, _images(2))
    messages = [str(w.message) for w in caught]
    assert any("unusable" in m and "differ" in m for m in messages)


def _nan_in_row(logits: torch.Tensor, row: int = 1) -> torch.Tensor:
    out = logits.clone()
    out[row, 0] = float("nan")
    return out


def test_nan_logits_are_the_same_error_under_every_engine(engine, monkeypatch):
    """ONNX Runtime's NaN logits raise eager's NonFiniteLogits with eager's message (the
    model's output and the images named), from the classifier and from the scoring engine."""
    x = _images(2)
    eager = _net_model()
    linear = eager.net[-1]
    monkeypatch.setattr(
        linear,
        "forward",
        lambda h: _nan_in_row(torch.nn.functional.linear(h, linear.weight, linear.bias)),
    )
    fast = _net_model().fast("onnx")
    _logits(fast, x)  # exported and checked
    call = onnx_engine.OnnxRunner.__call__
    monkeypatch.setattr(
        onnx_engine.OnnxRunner, "__call__", lambda self, z: _nan_in_row(call(self, z))
    )
    errors = {}
    for name, model in (("eager", eager), ("onnx", fast)):
        with pytest.raises(NonFiniteLogits) as infer_error:
            _logits(model, x)
        with pytest.raises(NonFiniteLogits) as scorer_error:
            Scorer(model).logits(x.flip(0))
        errors[name] = (infer_error.value, scorer_error.value)
    assert isinstance(fast._onnx(fast.preprocess(x)), onnx_engine.OnnxRunner)  # ORT ran
    for got, want in zip(errors["onnx"], errors["eager"], strict=True):
        assert type(got) is type(want) and str(got) == str(want)
        assert got.rows == want.rows and got.where == want.where
    assert str(errors["onnx"][0]) == (
        "model: the network's output of 'small' holds NaN or infinite logits for image 1 of a "
        "batch of 2"
    )


def test_nan_logits_from_onnx_runtime_at_the_cli_exit_2(engine, monkeypatch, capsys, tmp_path):
    import unmask.models

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(unmask.models, "load_model", lambda *a, **k: _net_model().fast("onnx"))
    call = onnx_engine.OnnxRunner.__call__

    def nan_after_check(self, z):  # the load check passes, the run returns NaN
        out = call(self, z)
        return out if z.shape[0] == onnx_engine._PROBE else torch.full_like(out, float("nan"))

    monkeypatch.setattr(onnx_engine.OnnxRunner, "__call__", nan_after_check)
    argv = ["explain", "--example", "coffee", "--size", "32", "--no-progress"]
    assert main([*argv, "--param", "patch_size=16", "--param", "stride=16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the network's output of 'small' holds NaN or infinite" in err[0]


def test_cuda_model_without_the_cuda_provider_falls_back(engine):
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):  # checked before the session
        onnx_engine.OnnxRunner(b"", torch.device("cuda"), 1)


def test_threads_zero_is_refused_at_the_cli(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("name = 'x'\n")
    assert main(["bench", "run", str(config), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads: expected a positive integer" in err[0]


def test_two_processes_exporting_at_once(tmp_path):
    """Two processes export the same network into one cache at the same time: both succeed,
    the file is whole (loads and agrees), no temporary file is left."""
    script = textwrap.dedent(
        f"""
        import sys, warnings, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_execution import _net_model, _images
        warnings.simplefilter("error", RuntimeWarning)
        model = _net_model().fast("onnx")
        with torch.inference_mode():
            print(model.infer(_images(2)).sum().item())
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        "UNMASK_CACHE_DIR": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    assert len({out for out, _ in outs}) == 1
    files = list((tmp_path / "onnx").iterdir())
    assert [f.suffix for f in files] == [".onnx"]
    model = _net_model()
    run = onnx_engine.OnnxRunner(files[0].read_bytes(), torch.device("cpu"), 1)
    onnx_engine._check(model.logits_net(), run, (3, 24, 24), torch.float32)  # whole, agreeing
