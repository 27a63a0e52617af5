"""The calibrated ``loihi2`` energy and time model (targets/loihi2.toml): every constant has a
source and a [low, high] bound around it, the static power is the one measured in lava-dl's
PilotNet SDNN notebook (fit), and the interval is the run priced at the bounds. The held-out
PilotNet SNN comparison needs lava-dl's network.net (not shipped): docs/estimator.md §2."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from neurocompile import ir
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from neurocompile.estimate import analyse, count_activity
from neurocompile.estimate.cycles import timing_interval
from neurocompile.estimate.energy import PER_EVENT_KEYS, energy_interval
from neurocompile.estimate.provenance import constant_sources
from neurocompile.target import load_target

DATA = json.loads((Path(__file__).parent / "data" / "intel_pilotnet.json").read_text())


def conv_net() -> ir.Graph:
    """Input 2x8x8 -> 3x3 conv (4 channels) -> LIF -> dense 5 -> LIF -> readout."""
    rng = np.random.default_rng(1)
    g = ir.Graph()
    g.add("input", ir.Input((2, 8, 8), scale=1.0, max_value=15))
    g.add("c.syn", ir.IntConv2d(rng.integers(-20, 40, size=(4, 2, 3, 3))), ["input"])
    g.add("c", ir.LoihiLIF(du=4095, dv=256, vth=40, bias_mant=np.zeros((4, 1, 1), np.int64),
                           bias_exp=np.zeros((4, 1, 1), np.int64)), ["c.syn"])
    g.add("flat", ir.Flatten(), ["c"])
    g.add("d.syn", ir.IntLinear(rng.integers(-30, 60, size=(5, 144))), ["flat"])
    g.add("d", ir.LoihiLIF(du=4095, dv=256, vth=40, bias_mant=np.zeros(5, np.int64),
                           bias_exp=np.zeros(5, np.int64)), ["d.syn"])
    g.add("head", ir.Readout(np.eye(5), np.zeros(5)), ["d"])
    g.output = "head"
    g.validate()
    return g


@pytest.fixture(scope="module")
def run():
    g = conv_net()
    images = np.random.default_rng(2).integers(0, 16, size=(3, 2, 8, 8))
    counts = count_activity(g, run_int(g, images, steps=6))
    return g, counts


def test_loihi2_is_the_default_and_every_constant_has_a_bound_and_a_source():
    target = load_target("loihi2")
    assert target.default_energy_model == "loihi2"
    spec = target.energy_models["loihi2"]
    sources = constant_sources(target)
    for key in PER_EVENT_KEYS:
        low, high = spec["interval"][key]
        assert 0 <= low <= spec[key] <= high, key
        assert sources[f"energy.models.loihi2.{key}"], key
        assert sources[f"energy.models.loihi2.interval.{key}"], key
    low, high = timing_interval(target)
    for key, value in vars(target.timing).items():
        assert getattr(low, key) <= value <= getattr(high, key), key
        assert sources[f"timing.{key}"] and sources[f"timing.interval.{key}"], key


def test_static_power_is_the_fitted_measurement_per_chip():
    """Fit: the SDNN notebook's static power of its one-chip board (never the held-out SNN's)."""
    target = load_target("loihi2")
    spec = target.energy_models["loihi2"]
    fitted = DATA["networks"]["pilotnet_sdnn"]["measured"]["static_power_w"]
    assert spec["static_watts_per_chip"] == pytest.approx(fitted, abs=5e-4)
    assert spec["static_scope"] == "chip"
    held_out = DATA["networks"]["pilotnet_snn"]["measured"]["static_power_w"]
    assert abs(spec["static_watts_per_chip"] - held_out) > 0.01


def test_default_model_reports_a_bracketing_interval(run):
    g, counts = run
    target = load_target("loihi2")
    est = analyse(g, counts, target)
    e = est.energy
    assert e.model == "loihi2" and e.kind == "per_event"
    low, high = e.interval_joules
    assert 0 < low < e.energy_joules < high
    t_low, t_high = e.time_per_step_interval_s
    assert t_low < est.cycles.time_per_step_s < t_high
    # static: 0.282 W x chips in use x T x time per step, at the value and at both bounds
    assert e.terms["static"] == pytest.approx(
        0.282 * est.mapping.chips * counts.steps * est.cycles.time_per_step_s)
    # the low bound is the run priced with every constant (energy and timing) at its low end
    spec = target.energy_models["loihi2"]
    lows = {k: spec["interval"][k][0] for k in PER_EVENT_KEYS}
    low_target = replace(target, timing=timing_interval(target)[0],
                         energy_models={**target.energy_models, "low": {**spec, **lows}})
    priced = analyse(g, counts, low_target, "low")
    assert priced.energy.energy_joules == pytest.approx(low)
    assert priced.cycles.time_per_step_s == pytest.approx(t_low)
    # other models carry no interval
    assert analyse(g, counts, target, "sop77").energy.interval_joules is None


def test_a_bound_that_does_not_bracket_its_value_is_refused(run):
    g, counts = run
    target = load_target("loihi2")
    spec = target.energy_models["loihi2"]
    bad = {**spec, "interval": {**spec["interval"], "joules_per_sop": [30e-12, 40e-12]}}
    broken = replace(target, energy_models={**target.energy_models, "loihi2": bad})
    est = analyse(g, counts, target, "loihi_full")
    with pytest.raises(NeurocompileError, match=r"interval\.joules_per_sop = \[3e-11, 4e-11\] "
                                                r"must be \[low, high\] with 0 <= low <= "):
        energy_interval(counts, broken, "loihi2", mapping=est.mapping, traffic=est.traffic)
    with pytest.raises(NeurocompileError, match="'loihi_full' has no"):
        energy_interval(counts, target, "loihi_full", mapping=est.mapping, traffic=est.traffic)
