"""Recurrent connections (``ir.Delay``) and synapse-bias axons (``ir.AlwaysOn``) in Lava: spike
for spike with the integer reference over several pipelined samples, so that the recurrent
synapse's silence at every sample's first step is exercised; refusals of what Lava cannot run."""
import nir
import numpy as np
import pytest

from conftest import assert_lava_bit_exact
from neurocompile import ir
from neurocompile.backends.lava.lower import lower
from neurocompile.backends.reference import run_int
from neurocompile.errors import GraphError
from neurocompile.frontend.nir_import import compile_nir

STEPS, SAMPLES, FEATURES = 8, 4, 12


def _neurons(n: int, cuba: bool):
    """NIR neurons with the NIR paper's Braille time constants (dt 1e-4)."""
    common = dict(r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n),
                  v_reset=np.zeros(n))
    if cuba:
        return nir.CubaLIF(tau_syn=np.full(n, 2e-4), tau_mem=np.full(n, 1e-3),
                           w_in=np.full(n, 2.0), **common)
    return nir.LIF(tau=np.full(n, 1e-3), **common)


def recurrent_nir(cuba: bool, seed: int = 0, hidden: int = 10, out: int = 4) -> nir.NIRGraph:
    """input(12) -> Affine -> lif1 (with a recurrent Affine back onto itself) -> Affine -> lif2,
    every Affine with a bias (a CUBA neuron's bias reaches it through an AlwaysOn axon)."""
    rng = np.random.default_rng(seed)

    def affine(n_out, n_in, scale):
        return nir.Affine(rng.normal(0, scale, (n_out, n_in)), rng.normal(0, 0.1, n_out))

    nodes = {"input": nir.Input(np.array([FEATURES])), "fc1": affine(hidden, FEATURES, 0.5),
             "lif1": _neurons(hidden, cuba), "rec": affine(hidden, hidden, 0.3),
             "fc2": affine(out, hidden, 0.5), "lif2": _neurons(out, cuba),
             "output": nir.Output(np.array([out]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"),
             ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def spikes(seed: int = 1, rate: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((SAMPLES, STEPS, FEATURES)) < rate).astype(np.int64)


def ops(graph: ir.Graph) -> set[type]:
    return {type(node.op) for node in graph}


def assert_recurrent_exact(graph: ir.Graph, inputs: np.ndarray, neurons: str) -> None:
    """Lava == reference, and ``neurons`` spiked at the last step of a sample followed by
    another: without the recurrent synapse's silence at sample starts, those spikes would reach
    the next sample."""
    reference = assert_lava_bit_exact(graph, inputs, STEPS, active=neurons)
    assert reference.outputs[neurons][:-1, -1].sum() > 0, "no spike crosses a sample boundary"


@pytest.mark.lava
@pytest.mark.timeout(300)
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_cuba_recurrent_network_with_bias_axons(reset):
    graph = compile_nir(recurrent_nir(cuba=True), steps=STEPS, spike_input=True,
                        reset=reset).graph
    assert {ir.Delay, ir.AlwaysOn} <= ops(graph)
    assert_recurrent_exact(graph, spikes(), "lif1")


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_plain_lif_recurrent_network():
    """current_leak 0: the biases stay in the neurons, no AlwaysOn."""
    graph = compile_nir(recurrent_nir(cuba=False, seed=3), steps=STEPS, spike_input=True).graph
    assert ir.Delay in ops(graph) and ir.AlwaysOn not in ops(graph)
    lif = next(n.op for n in graph if isinstance(n.op, ir.LoihiLIF))
    assert lif.du == 4095  # no current memory: a plain LIF
    assert_recurrent_exact(graph, spikes(), "lif1")


def hand_built(rec_weight: np.ndarray, rec_exp: int = 0, cycle: bool = False) -> ir.Graph:
    """An integer graph by hand: input(6) -> fc -> lif <- rec <- Delay. ``cycle``: the Delay is
    of a second population (lif -> fc2 -> lif2 -> Delay -> rec -> lif), a longer cycle."""
    rng = np.random.default_rng(0)
    g = ir.Graph()
    x = g.add("input", ir.Input((6,), 1.0, 1, temporal=True))
    fc = g.add("fc", ir.IntLinear(2 * rng.integers(0, 100, (5, 6))), [x])
    previous = g.add("previous", ir.Delay("lif2" if cycle else "lif", (5,)))
    rec = g.add("rec", ir.IntLinear(rec_weight, weight_exp=rec_exp), [previous])
    lif = g.add("lif", ir.LoihiLIF(du=1024, dv=512, vth=200, bias_mant=np.zeros(5, int),
                                   bias_exp=np.zeros(5, int)),
                [g.add("current", ir.CurrentSum(), [fc, rec])])
    if cycle:
        fc2 = g.add("fc2", ir.IntLinear(2 * rng.integers(0, 100, (5, 5))), [lif])
        lif = g.add("lif2", ir.LoihiLIF(du=4095, dv=512, vth=100, bias_mant=np.zeros(5, int),
                                        bias_exp=np.zeros(5, int)), [fc2])
    g.output = g.add("readout", ir.Readout(np.ones((2, 5)), np.zeros(2)), [lif])
    g.meta = {"architecture": "test", "config": {}, "steps": STEPS}
    return g


def self_inhibited(rec: int) -> ir.Graph:
    """One neuron (du = dv = 4095) driven by 6 inputs of weight 254, inhibiting itself with ``rec``:
    with rec = -256 its current after a spike is exactly its threshold (no spike), so it fires
    every other step; with -255 at every step."""
    g = ir.Graph()
    x = g.add("input", ir.Input((6,), 1.0, 1, temporal=True))
    fc = g.add("fc", ir.IntLinear(np.full((1, 6), 254)), [x])
    rec = g.add("rec", ir.IntLinear(np.array([[rec]])), [g.add("previous", ir.Delay("lif", (1,)))])
    lif = g.add("lif", ir.LoihiLIF(du=4095, dv=4095, vth=6 * 254 - 256, bias_mant=np.zeros(1, int),
                                   bias_exp=np.zeros(1, int)),
                [g.add("current", ir.CurrentSum(), [fc, rec])])
    g.output = g.add("readout", ir.Readout(np.ones((1, 1)), np.zeros(1)), [lif])
    g.meta = {"architecture": "test", "config": {}, "steps": STEPS}
    return g


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_recurrent_weight_of_minus_256_stays_exact():
    """All recurrent weights <= 0: Lava's Sparse would infer the inhibitory sign mode and clip
    -256 to -255 (here: a spike at every step); the lowering forces the mixed-sign mode."""
    ones = np.ones((SAMPLES, STEPS, 6), np.int64)
    reference = assert_lava_bit_exact(self_inhibited(-256), ones, STEPS, active="lif")
    clipped = run_int(self_inhibited(-255), ones, STEPS)
    assert not np.array_equal(reference.outputs["lif"], clipped.outputs["lif"])


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_recurrent_weight_exponent():
    """Sparse's shift (a floor right shift) is the reference's."""
    weight = 2 * np.random.default_rng(1).integers(-128, 128, (5, 5))
    assert_recurrent_exact(hand_built(weight, -1), spikes(2, 0.5)[..., :6], "lif")


def test_refusals_name_the_node():
    images = spikes()[..., :6]
    with pytest.raises(GraphError, match=r"^rec: a recurrent synapse from lif2 into lif;"):
        lower(hand_built(np.zeros((5, 5), int), cycle=True), images, STEPS)
    with pytest.raises(GraphError, match=r"^rec: weights must be even"):
        lower(hand_built(np.full((5, 5), 3)), images, STEPS)


def test_a_delayed_image_is_refused():
    g = ir.Graph()
    x = g.add("input", ir.Input((1, 4, 4), 1.0, 1))
    conv = g.add("conv", ir.IntConv2d(np.full((2, 1, 3, 3), 2), padding=1), [x])
    previous = g.add("previous", ir.Delay("lif", (2, 4, 4)))
    rec = g.add("rec", ir.IntConv2d(np.full((2, 2, 3, 3), 2), padding=1), [previous])
    lif = g.add("lif", ir.LoihiLIF(du=4095, dv=512, vth=10, bias_mant=np.zeros(1, int),
                                   bias_exp=np.zeros(1, int)),
                [g.add("current", ir.CurrentSum(), [conv, rec])])
    g.output = g.add("readout", ir.Readout(np.ones((2, 2)), np.zeros(2)),
                     [g.add("tokens", ir.Tokens(), [lif])])
    g.meta = {"architecture": "test", "config": {}, "steps": STEPS}
    with pytest.raises(GraphError, match=r"^previous: delays lif's spikes of shape \(2, 4, 4\);"):
        lower(g, np.zeros((1, 1, 4, 4), int), STEPS)
