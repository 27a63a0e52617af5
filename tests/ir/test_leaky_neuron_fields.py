"""LeakyNeuron: strict comparison, current decay (CUBA), leak = 1: kernels, quantization, NIR."""
import numpy as np
import pytest

from neurocompile import ir
from neurocompile.backends.reference.float_kernels import leaky_neuron
from neurocompile.ir.nir_io import from_nir, to_nir
from neurocompile.quantize import quantize
from neurocompile.quantize.loihi2 import _decays, biased_lif, state_factor
from neurocompile.target import load_target

TARGET = load_target("loihi2")


def _steps(op, xs):
    state, out = {}, []
    for t, x in enumerate(xs):
        out.append(leaky_neuron(op, [np.array([x], dtype=float)], state, t)[0])
    return out


def test_defaults_are_unchanged():
    op = ir.LeakyNeuron(0.5, 0.5, 1.0)
    assert not op.strict and op.current_leak == 0.0
    assert _decays(op, TARGET) == (4095, 2048)
    lif = biased_lif(op, 10, 64.0, np.zeros(3), False, TARGET)
    assert np.all(lif.bias == 1)  # the +1 that turns Loihi's > into >=


def test_strict_comparison_at_the_threshold():
    assert _steps(ir.LeakyNeuron(0.0, 1.0, 1.0), [1.0, 0.5]) == [1.0, 0.0]
    assert _steps(ir.LeakyNeuron(0.0, 1.0, 1.0, strict=True), [1.0, 1.5]) == [0.0, 1.0]
    lif = biased_lif(ir.LeakyNeuron(0.5, 1.0, 1.0, strict=True), 10, 640.0, np.zeros(2), False,
                     TARGET)
    assert np.all(lif.bias == 0)


def test_current_decay_and_no_leak():
    op = ir.LeakyNeuron(1.0, 1.0, 10.0, current_leak=0.5)
    # i: 1, 1.5, 1.75; v: 1, 2.5, 4.25 (no leak): no spike yet
    state = {}
    for t, x in enumerate([1.0, 1.0, 1.0]):
        leaky_neuron(op, [np.array([x])], state, t)
    assert state["i"][0] == 1.75 and state["v"][0] == 4.25
    assert _decays(op, TARGET) == (2047, 0)
    assert state_factor(op, 8, TARGET) == 2.0 * 8  # u sums at most 2x, v (no leak) T times
    with pytest.raises(ValueError, match="current_leak"):
        ir.LeakyNeuron(0.5, 1.0, 1.0, current_leak=1.0)
    with pytest.raises(ValueError, match="strict must be a bool"):
        ir.LeakyNeuron(0.5, 1.0, 1.0, strict="yes")


def test_cuba_neuron_refuses_a_bias():
    from neurocompile.errors import QuantizationError

    with pytest.raises(QuantizationError, match="cannot take a synapse bias"):
        biased_lif(ir.LeakyNeuron(0.5, 1.0, 1.0, current_leak=0.5), 10, 640.0, np.ones(2),
                   False, TARGET)


@pytest.mark.parametrize("op", [ir.LeakyNeuron(0.9, 1.0, 1.0, strict=True),
                                ir.LeakyNeuron(1.0, 1.0, 0.5),
                                ir.LeakyNeuron(0.8, 1.0, 1.0, strict=True, current_leak=0.5),
                                ir.LeakyNeuron(1.0, 2.0, 1.0, current_leak=0.25)])
def test_nir_round_trip_and_quantization(op):
    import nir

    rng = np.random.default_rng(0)
    g = ir.Graph()
    x = g.add("input", ir.Input((16,), 1 / 16, 16))
    x = g.add("fc", ir.Linear(rng.normal(0, 0.3, (8, 16)), np.zeros(8)), [x])
    x = g.add("lif", op, [x])
    g.output = g.add("readout", ir.Readout(np.eye(8), np.zeros(8)), [x])
    g.meta = {"steps": 4}
    g.validate()
    stock = to_nir(g).nodes["lif"]
    assert isinstance(stock, (nir.LIF, nir.IF, nir.CubaLIF))
    back = from_nir(to_nir(g))["lif"].op
    assert (back.leak, back.gain, back.threshold, back.strict, back.current_leak) == \
        (op.leak, op.gain, op.threshold, op.strict, op.current_leak)
    q = quantize(g, TARGET)
    lif = q.graph["lif"].op
    assert (lif.du, lif.dv) == _decays(op, TARGET)
