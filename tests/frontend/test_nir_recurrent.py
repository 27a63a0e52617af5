"""Recurrent NIR graphs (the NIR paper's Braille network, snnTorch's RSynaptic / RLeaky): cycles
become explicit one-step delays, CUBA synapse biases an always-on axon. Graphs are generated
here with the Braille network's structure (the project does not ship other projects' files)."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import snntorch as snn  # installed by scripts/setup_env.sh
import torch

from neurocompile import ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.errors import NeurocompileError, UnsupportedModelError
from neurocompile.frontend.nir_import import compile_nir, import_nir

DT = 1e-4  # snnTorch's step: the parameters below are written for it
STEPS = 48
INPUTS, HIDDEN, CLASSES = 12, 20, 5


def _cuba(n, tau_syn=2e-4, tau_mem=1e-3, r=10.0, w_in=2.0):
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(r),
                       v_leak=full(0.0), v_threshold=full(1.0), v_reset=full(0.0),
                       w_in=full(w_in))


def _lif(n, tau=1e-3, r=10.0):
    full = lambda v: np.full(n, v, dtype=np.float64)  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(r), v_leak=full(0.0), v_threshold=full(1.0),
                   v_reset=full(0.0))


def braille_like(seed: int = 0, bias: bool = True, neuron=_cuba) -> nir.NIRGraph:
    """input -> fc1 -> lif1 (<- w_rec <- lif1) -> fc2 -> lif2 -> output, as the NIR paper's
    ``braille_noDelay_bias_zero.nir`` (Affine with biases) or ``..._noBias_...`` (Linear)."""
    rng = np.random.default_rng(seed)

    def synapse(out, inp, gain):
        weight = rng.normal(0, gain / np.sqrt(inp), (out, inp))
        return nir.Affine(weight, rng.normal(0, 0.1, out)) if bias else nir.Linear(weight)

    nodes = {"input": nir.Input(np.array([INPUTS])), "fc1": synapse(HIDDEN, INPUTS, 3.0),
             "lif1.lif": neuron(HIDDEN), "lif1.w_rec": synapse(HIDDEN, HIDDEN, 1.5),
             "fc2": synapse(CLASSES, HIDDEN, 2.0), "lif2": neuron(CLASSES),
             "output": nir.Output(np.array([CLASSES]))}
    edges = [("input", "fc1"), ("fc1", "lif1.lif"), ("lif1.lif", "lif1.w_rec"),
             ("lif1.w_rec", "lif1.lif"), ("lif1.lif", "fc2"), ("fc2", "lif2"),
             ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def simulate_nir(graph: nir.NIRGraph, x: np.ndarray, order: list[str], dt: float = DT):
    """The NIR equations, forward Euler with step dt, written out: nodes computed in ``order``
    each step; an edge from a node not yet computed this step carries its previous step's
    value (0 at step 0), which is what makes a cycle recurrent: with the recurrent synapse
    before its neuron in ``order``, it reads the neuron's previous spikes (snnTorch's RSynaptic:
    ``recurrent(spk)``, its bias there from step 0). x: (B, T, INPUTS).
    Returns every node's outputs (B, T, ...)."""
    batch, steps = x.shape[:2]
    now: dict[str, np.ndarray] = {}
    state: dict[str, dict] = {name: {} for name in order}
    out = {name: [] for name in order}
    for t in range(steps):
        before, now = now, {}
        for name in order:
            node = graph.nodes[name]
            srcs = [s for s, d in graph.edges if d == name]
            inp = sum((now[s] if s in now else before.get(s, _zeros(graph, s, batch)))
                      for s in srcs) if srcs else x[:, t]
            if isinstance(node, nir.Input):
                y = inp
            elif isinstance(node, (nir.Affine, nir.Linear)):
                y = inp @ node.weight.T + (node.bias if isinstance(node, nir.Affine) else 0)
            else:
                s = state[name]
                i = s.get("i", 0.0)
                v = s.get("v", np.zeros((batch, node.v_threshold.size)))
                if isinstance(node, nir.CubaLIF):
                    i = i + dt / node.tau_syn * (-i + node.w_in * inp)
                    v = v + dt / node.tau_mem * (node.v_leak - v + node.r * i)
                else:
                    v = v + dt / node.tau * (node.v_leak - v + node.r * inp)
                y = (v > node.v_threshold).astype(np.float64)
                s["i"], s["v"] = i, np.where(y > 0, node.v_reset, v)
            now[name] = y
            out[name].append(y)
    return {name: np.stack(frames, 1) for name, frames in out.items()}


def _zeros(graph: nir.NIRGraph, name: str, batch: int) -> np.ndarray:
    node = graph.nodes[name]
    size = node.weight.shape[0] if hasattr(node, "weight") else node.v_threshold.size
    return np.zeros((batch, size))


ORDER = ["input", "fc1", "lif1.w_rec", "lif1.lif", "fc2", "lif2"]


@pytest.fixture(scope="module")
def spikes_in():
    rng = np.random.default_rng(7)
    return (rng.random((16, STEPS, INPUTS)) < 0.25).astype(np.int64)


def _mismatch(a, b) -> float:
    return float((np.asarray(a) != np.asarray(b)).mean())


@pytest.mark.parametrize("neuron", [_cuba, _lif], ids=["CubaLIF", "LIF"])
@pytest.mark.parametrize("bias", [True, False], ids=["Affine", "Linear"])
def test_float_graph_is_the_nir_equations(spikes_in, bias, neuron):
    nir_graph = braille_like(bias=bias, neuron=neuron)
    graph = import_nir(nir_graph, steps=STEPS, spike_input=True)
    delays = [n for n in graph if isinstance(n.op, ir.Delay)]
    assert [(d.op.source, graph.users(d.name)[0].name) for d in delays] == \
        [("lif1.lif", "lif1.w_rec")]
    want = simulate_nir(nir_graph, spikes_in, ORDER)
    got = run_float(graph, spikes_in, STEPS).outputs
    for name in ("lif1.lif", "lif2"):
        assert want[name].sum() > 0 and want[name].mean() < 0.9, name
        assert _mismatch(got[name], want[name]) < 2e-3, name  # float rounding at the threshold
    # the recurrent connection matters: without it the hidden layer fires differently
    cut = braille_like(bias=bias, neuron=neuron)
    cut.nodes["lif1.w_rec"].weight[:] = 0
    if bias:
        cut.nodes["lif1.w_rec"].bias[:] = 0
    assert _mismatch(simulate_nir(cut, spikes_in, ORDER)["lif1.lif"], want["lif1.lif"]) > 0.01


def test_snntorch_rleaky_agrees_with_the_float_graph(spikes_in):
    """snnTorch's own RLeaky network (Linear -> RLeaky with an all-to-all recurrent Linear ->
    Linear -> Leaky, reset to zero right after the spike as NIR does: ``reset_delay=False``;
    RLeaky's default holds mem at 0 for the next step), stepped in float64, gives the float
    graph's spikes. Not RSynaptic: snnTorch 1.0's RSynaptic holds mem at 0 for the step after a spike whatever
    ``reset_delay`` says (its immediate reset changes a local copy), which NIR cannot express.
    And not through ``import_from_nir``: with nirtorch 2.6 it fails on recurrent graphs (its rnn
    subgraph breaks nirtorch's state construction)."""
    nir_graph = braille_like(neuron=_lif)
    beta = float(1 - DT / nir_graph.nodes["lif1.lif"].tau[0])  # r dt / tau = 1: no input gain

    def linear(node):
        layer = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0]).double()
        layer.weight.data = torch.from_numpy(node.weight)
        layer.bias.data = torch.from_numpy(node.bias)
        return layer

    fc1, fc2 = linear(nir_graph.nodes["fc1"]), linear(nir_graph.nodes["fc2"])
    hidden = snn.RLeaky(beta=beta, linear_features=HIDDEN, all_to_all=True,
                        reset_mechanism="zero", reset_delay=False).double()
    hidden.recurrent = linear(nir_graph.nodes["lif1.w_rec"])
    head = snn.Leaky(beta=beta, reset_mechanism="zero", reset_delay=False).double()
    x = torch.from_numpy(spikes_in.astype(np.float64))
    with torch.no_grad():
        zeros = lambda n: torch.zeros(len(x), n, dtype=torch.float64)  # noqa: E731
        spk, mem, mem2 = zeros(HIDDEN), zeros(HIDDEN), zeros(CLASSES)
        spikes = {"lif1.lif": [], "lif2": []}
        for t in range(STEPS):
            spk, mem = hidden(fc1(x[:, t]), spk, mem)
            spk = spk.double()  # snnTorch's spike function returns float32
            out, mem2 = head(fc2(spk), mem2)
            spikes["lif1.lif"].append(spk.numpy())
            spikes["lif2"].append(out.numpy())
    graph = import_nir(nir_graph, steps=STEPS, spike_input=True)
    got = run_float(graph, spikes_in, STEPS).outputs
    for name, frames in spikes.items():
        theirs = np.stack(frames, 1)
        assert theirs.sum() > 0
        assert _mismatch(got[name], theirs) < 2e-3, name


def test_a_nested_subgraph_is_the_flat_graph(spikes_in):
    flat = braille_like()
    inner = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([HIDDEN])), "lif": flat.nodes["lif1.lif"],
               "w_rec": flat.nodes["lif1.w_rec"], "output": nir.Output(np.array([HIDDEN]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nodes = {k: v for k, v in flat.nodes.items() if not k.startswith("lif1.")}
    nested = nir.NIRGraph(nodes={**nodes, "lif1": inner},
                          edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"),
                                 ("fc2", "lif2"), ("lif2", "output")], type_check=False)
    a = run_float(import_nir(flat, steps=STEPS, spike_input=True), spikes_in, STEPS)
    b = run_float(import_nir(nested, steps=STEPS, spike_input=True), spikes_in, STEPS)
    assert np.array_equal(a.outputs["lif2"], b.outputs["lif2"])
    assert np.array_equal(a.outputs["lif1.lif"], b.outputs["lif1.lif"])


def test_cuba_biases_ride_an_always_on_axon_exactly(spikes_in):
    """The float pipeline moves a CUBA neuron's synapse biases onto an always-on axon (Loihi adds
    a neuron's own bias to v): the same float spikes, and the integer graph feeds the bias as a
    synapse into the neuron's current."""
    graph = import_nir(braille_like(), steps=STEPS, spike_input=True)
    compiled = compile_nir(braille_like(), steps=STEPS, spike_input=True)
    axons = [n.name for n in compiled.float_graph if isinstance(n.op, ir.AlwaysOn)]
    assert len(axons) == 2
    before = run_float(graph, spikes_in, STEPS).outputs
    after = run_float(compiled.float_graph, spikes_in, STEPS).outputs
    for name in ("lif1.lif", "lif2"):
        assert _mismatch(before[name], after[name]) < 1e-3, name
    for node in compiled.quantized.graph:
        if isinstance(node.op, ir.LoihiLIF):
            assert node.op.du < 4095  # a current decay, fed through its bias synapse
    assert compiled.overflow_proven


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_integer_graph_follows_the_float_graph(spikes_in, reset):
    compiled = compile_nir(braille_like(bias=reset == "zero"), steps=STEPS, spike_input=True,
                           reset=reset)
    assert compiled.overflow_proven
    lifs = [n.op for n in compiled.quantized.graph if isinstance(n.op, ir.LoihiLIF)]
    assert all((lif.vsub > 0) == (reset == "subtract") for lif in lifs)
    f = run_float(compiled.float_graph, spikes_in, STEPS)
    i = run_int(compiled.quantized.graph, spikes_in, STEPS)
    assert i.outputs["lif1.lif"].sum() > 0
    # 8-bit weights in a recurrent loop: spikes drift, rates stay close
    assert abs(f.outputs["lif1.lif"].mean() - i.outputs["lif1.lif"].mean()) < 0.05


def test_recurrence_refusals_name_the_node():
    g = braille_like()
    g.edges.append(("lif2", "lif1.lif"))  # spikes straight into a neuron, no synapse
    with pytest.raises(UnsupportedModelError, match=r"NIR node 'lif1.lif' \(CubaLIF\): reads "
                                                    "'lif2' in a recurrent connection; only an "
                                                    "Affine / Linear can carry"):
        import_nir(g, steps=2, spike_input=True)
    g = braille_like()
    g.edges.append(("fc1", "fc2"))  # a current into a synapse: a sum of spikes and a current
    with pytest.raises(NeurocompileError, match=r"^fc2_sum: Add of tensors with different "
                                                "scales"):
        compile_nir(g, steps=2, spike_input=True)
