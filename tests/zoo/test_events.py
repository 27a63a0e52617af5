"""Event-camera zoo models: binary frames (B, T, 2, 10, 10) in, frame t at step t; the shipped
pair (``spikformer_events``, ``ds2ta_events``) exported with a temporal binary input, their float
and integer accuracies on the event digits test split, Lava, and the built-in data of the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import neurocompile
from conftest import assert_lava_bit_exact, random_spikformer
from neurocompile.bundle import read_bundle
from neurocompile.cli import main
from neurocompile.datasets import event_digits_split
from neurocompile.errors import UnsupportedModelError
from neurocompile.evaluate import run_reference
from neurocompile.frontend import load_checkpoint
from neurocompile.zoo.registry import zoo_path
from neurocompile.zoo.spikformer import SpikformerConfig
from neurocompile.zoo.train import random_shift

SHIPPED = {"spikformer_events": "ssa", "ds2ta_events": "ds2ta"}  # name -> attention
STEPS = 8
EVENTS = {"input": "events", "in_channels": 2, "img_size": 10, "input_scale": 1.0}


def small_event_model(seed: int = 0, **config):
    return random_spikformer(seed, **{**EVENTS, "T": 4, "dim": 16, "heads": 2, **config})


def test_event_input_feeds_one_frame_per_step():
    model = small_event_model()
    frames = torch.randint(0, 2, (3, 4, 2, 10, 10))
    x = model.encode(frames)
    assert x.shape == (4, 3, 2, 10, 10)
    assert all(torch.equal(x[t], frames[:, t].float()) for t in range(4))
    assert model(frames).shape == (3, 10)
    with pytest.raises(ValueError, match="T = 4"):
        model(frames[:, :3])
    with pytest.raises(ValueError, match="T = 4"):
        model(frames[:, 0])  # a static image is not an event stream


@pytest.mark.parametrize("kwargs,needle", [
    ({"input": "video"}, "not one of image, events"),
    ({"input": "events"}, "input_scale must be 1"),  # the default 1/16 would scale the spikes
])
def test_input_config_validation(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SpikformerConfig(**kwargs)


@pytest.mark.parametrize("attention", ["ssa", "ds2ta"])
def test_converter_emits_a_temporal_binary_input(attention):
    compiled = neurocompile.compile(small_event_model(attention=attention))
    op = compiled.float_graph["input"].op
    assert (op.temporal, op.shape, op.scale, op.max_value) == (True, (2, 10, 10), 1.0, 1)
    assert compiled.steps == 4


def test_the_proof_uses_event_frames():
    """A forward that no longer reads frame t at step t (here: reversed time) is refused."""
    model = small_event_model(seed=1)
    original = model.encode
    model.encode = lambda frames: original(frames).flip(0)
    with pytest.raises(UnsupportedModelError, match="does not reproduce"):
        neurocompile.compile(model)


def test_random_shift_moves_every_frame_of_a_sample_alike():
    frames = torch.rand(6, 4, 2, 10, 10)
    shifted = random_shift(frames, torch.Generator().manual_seed(0))
    assert shifted.shape == frames.shape
    for sample, out in zip(frames, shifted):
        shifts = {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if torch.equal(out[..., 1:-1, 1:-1],
                                 sample[..., 1 - dy:9 - dy, 1 - dx:9 - dx])}
        assert len(shifts) == 1  # one offset explains all T frames and both channels


# -- the shipped pair -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def events():
    return event_digits_split(STEPS)


@pytest.fixture(scope="module", params=list(SHIPPED))
def shipped(request):
    return request.param, load_checkpoint(zoo_path(request.param))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Each shipped event model exported by the CLI: name -> bundle directory."""
    out = {}
    for name in SHIPPED:
        out[name] = tmp_path_factory.mktemp(name) / "bundle"
        assert main(["export", name, "-o", str(out[name])]) == 0
    return out


def test_checkpoint_is_small_and_records_its_command(shipped):
    name, loaded = shipped
    assert zoo_path(name).stat().st_size < 1_000_000
    cfg = SpikformerConfig.from_dict(loaded.config)
    assert (cfg.input, cfg.in_channels, cfg.img_size, cfg.T) == ("events", 2, 10, STEPS)
    assert cfg.attention == SHIPPED[name]
    command = loaded.training["command"]
    assert command.startswith("python -m neurocompile.zoo.train") and "--data events" in command
    assert loaded.training["data"] == "events"


def test_export_has_a_temporal_binary_input(bundles, shipped):
    bundle = read_bundle(bundles[shipped[0]])
    op = bundle.graph["input"].op
    assert (op.temporal, op.shape, op.scale, op.max_value) == (True, (2, 10, 10), 1.0, 1)
    assert bundle.steps == STEPS


@pytest.fixture(scope="module")
def predictions(bundles, shipped, events):
    """(float, integer) predictions of the exported model on the whole event test split."""
    bundle = read_bundle(bundles[shipped[0]])
    x = events.test_x.astype(np.int64)
    return bundle.float_predictions(x), run_reference(bundle.graph, x, bundle.steps).predictions()


def test_float_accuracy_is_the_recorded_one(shipped, predictions, events):
    """The whole event test split, as the training script measured it (batching may flip a
    borderline spike)."""
    accuracy = float(np.mean(predictions[0] == events.test_y))
    assert accuracy >= 0.90
    assert accuracy == pytest.approx(shipped[1].training["test_accuracy"], abs=0.005)


def test_integer_accuracy_within_001_of_float(predictions, events):
    float_acc, int_acc = (float(np.mean(p == events.test_y)) for p in predictions)
    assert abs(int_acc - float_acc) <= 0.01 + 1e-12, (float_acc, int_acc)  # the bar is inclusive


def _cli_json(capsys, *argv):
    assert main([str(a) for a in argv] + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_simulate_without_input_runs_the_event_split(bundles, events, capsys):
    bundle = bundles["spikformer_events"]
    data = _cli_json(capsys, "simulate", bundle, "--samples", 3)
    assert data["data"] == {"source": "event-digits-test", "labels": "event-digits-test",
                            "samples": 3, "available": 450, "steps": STEPS}
    graph = read_bundle(bundle).graph
    expected = run_reference(graph, events.test_x[:3].astype(np.int64), STEPS).predictions()
    assert data["predictions"] == expected.tolist()
    assert main(["simulate", str(bundle), "--samples", "3"]) == 0
    assert ("data               digits test split (sklearn, seed 0, 25 %) as DVS event streams "
            "(8 frames of ON/OFF x 10x10), first 3 of 450" in capsys.readouterr().out)


def test_other_time_varying_input_needs_input(tmp_path, capsys):
    """A temporal input of another shape has no built-in split: one line, exit 2."""
    model = random_spikformer(0, input="events", in_channels=1, img_size=8, input_scale=1.0,
                              dim=16, heads=2)
    bundle = neurocompile.compile(model).save(tmp_path / "b")
    assert main(["simulate", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert "time-varying input (N, T, 1, 8, 8)" in err and "pass --input" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.lava
@pytest.mark.timeout(900)
def test_lava_is_bit_exact_on_event_streams(bundles, shipped, events):
    bundle = read_bundle(bundles[shipped[0]])
    assert_lava_bit_exact(bundle.graph, events.test_x[:2].astype(np.int64), bundle.steps)


@pytest.mark.lava
@pytest.mark.timeout(900)
def test_verify_without_input_names_the_event_split(bundles, capsys):
    data = _cli_json(capsys, "verify", bundles["ds2ta_events"], "--samples", 2)
    assert data["data"]["source"] == "event-digits-test" and data["samples"] == 2
    assert data["bit_exact"] and data["spike_mismatches"] == 0


@pytest.mark.lava
@pytest.mark.timeout(900)
def test_verify_takes_an_event_array_and_its_labels(bundles, events, tmp_path, capsys):
    """The issue's command: ``verify B --input X.npy --labels Y.npy --json`` on (N, T, ...)
    event streams; accuracies recomputed here from the integer reference and the float model."""
    x, y = events.test_x[10:13].astype(np.int64), events.test_y[10:13].copy()
    y[0] = (y[0] + 1) % 10  # one wrong label: an accuracy below 1 that must be measured
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    bundle = bundles["spikformer_events"]
    data = _cli_json(capsys, "verify", bundle, "--input", tmp_path / "x.npy",
                     "--labels", tmp_path / "y.npy")
    graph = read_bundle(bundle).graph
    reference = run_reference(graph, x, STEPS).predictions()
    floats = read_bundle(bundle).float_predictions(x)
    assert data["int_accuracy"] == pytest.approx(np.mean(reference == y))
    assert data["float_accuracy"] == pytest.approx(np.mean(floats == y))
    assert data["float_int_prediction_agreement"] == pytest.approx(np.mean(floats == reference))
    assert data["spike_mismatches"] == 0 and data["bit_exact"] and data["samples"] == 3
