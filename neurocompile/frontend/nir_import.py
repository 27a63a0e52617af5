"""Import ``.nir`` files written by other tools (e.g. snnTorch's ``export_to_nir``) into the IR.

``import_nir(path_or_graph, example_input=None, dt=1e-4, **input_options)`` returns a validated
float graph like the PyTorch frontend (``frontend.modules``): ``meta`` = ``{"architecture":
"nir", "config": {...}, "steps": T}``, output an ``ir.Readout``. ``compile_nir`` runs it through
the same passes, quantization and checks as ``neurocompile.compile``.

Supported stock nodes (chains or DAGs; an edge into a node adds the sources, as NIR defines):

============== =====================================================================================
Input          ``ir.Input``: the NIR input shape (a leading batch axis of 1, written when the
               producer was not told to ignore it, is dropped); integer levels on a grid
               (``input_scale``, default 1/16: digits pixels / 16), the same at every step;
               with ``spike_input`` binary spike trains, one frame per step
Affine, Linear ``ir.Linear`` on vectors (Linear: zero bias)
Conv2d         ``ir.Conv2d``: kh x kw kernels, stride / padding one integer or one per axis (h, w),
               groups (depthwise included), dilation 1 (``"same"`` for odd kernel sizes at
               stride 1, ``"valid"``)
Flatten        ``ir.Flatten`` when it flattens the whole sample (start_dim 0 or -ndim, end_dim -1)
SumPool2d,     folded into the synapse that reads it (a Conv2d, or an Affine / Linear through a
AvgPool2d      Flatten; per-axis kernel / stride / padding): a pool is a depthwise convolution of
               ones (or 1/(kh kw)) with no neuron after it, and two convolutions compose
               exactly (``frontend.compose``)
LIF, CubaLIF,  ``ir.LeakyNeuron`` (below); several synapses into one neuron add their currents
IF             (``ir.CurrentSum``); a CubaLIF's synapse biases ride an always-on axon
               (``passes.bias_axons``: Loihi adds a neuron's own bias to v, not to its current)
Output         the graph output: after a neuron, ``Readout(identity, 0)`` (argmax of spike counts);
               after an Affine / Linear reading spikes (directly or through a Flatten), that layer
               becomes ``Readout(W, b)`` (the mean over time of ``W s_t + b`` is
               ``W mean(s) + b``); through an ``LI``, the
               LI's membrane at the last step (``Readout(leak=1 - dt/tau)``, below)
NIRGraph       a nested graph is flattened into its nodes (``outer.inner``)
============== =====================================================================================

**Recurrent connections (cycles).** In every cycle, the edges that leave a neuron for another
node of the cycle carry the neuron's spikes of the previous step (an ``ir.Delay``; zero at a
sample's first step), as snnTorch's RLeaky / RSynaptic compute ``recurrent(spk)`` and as Loihi's
recurrent synapses deliver: the NIR paper's Braille network (``lif -> w_rec -> lif``) is a CubaLIF
whose input current is ``fc1(x_t) + w_rec(s_{t-1})`` (plus both biases from step 0). Such an edge
must enter an Affine / Linear; a cycle without a neuron has no step to wait for and is refused.

**Discretisation (the dt convention).** NIR stores continuous-time ODEs; a producing tool
simulates them in discrete time with its own step dt and writes its parameters for that dt.
snnTorch (and Norse) use forward Euler with ``dt = 1e-4``, the default here (neurocompile's own
files use dt = 1, but those are read by ``read_nir``). Every neuron becomes one
``ir.LeakyNeuron`` (``i = current_leak i + x; v = leak v + gain i``, spike iff ``v > threshold``)::

    LIF      tau dv/dt = (v_leak - v) + r I
             -> leak = 1 - dt/tau, gain = r dt/tau, current_leak = 0 (+ dt/tau v_leak per step)
    CubaLIF  tau_syn dI/dt = -I + w_in S,  tau_mem dv/dt = (v_leak - v) + r I
             -> current_leak = 1 - dt/tau_syn, leak = 1 - dt/tau_mem,
                gain = (w_in dt/tau_syn) (r dt/tau_mem); v is updated from the NEW current
                (snnTorch's Synaptic: syn = alpha syn + x; mem = beta mem + syn)
    IF       dv/dt = r I  -> leak = 1, gain = r dt

snnTorch writes ``Leaky(beta)`` as ``tau = dt/(1-beta), r = tau/dt`` and ``Synaptic(alpha, beta)``
as ``tau_syn = dt/(1-alpha), w_in = tau_syn/dt, tau_mem = dt/(1-beta), r = tau_mem/dt``, so these
are exactly ``v = beta v + I`` and ``syn = alpha syn + x; v = beta v + syn``: the same
``LeakyNeuron`` (leak = beta, current_leak = alpha, gain 1, strict) that the tracer builds from
the live module (``frontend/snntorch.py``). Leaks and gains are computed in float64 and rounded to the precision
the file stores the parameters in (float32 for snnTorch), which gives snnTorch's float32 beta and
alpha back; a gain within float32 rounding of 1 is 1. A constant ``v_leak`` (LIF only) adds
``dt/tau v_leak`` per step, folded into the synapse bias. Per-neuron gains, ``w_in`` and thresholds
fold into the rows of the synapse before the neuron (which then has gain 1 and threshold 1); the
leaks must be the same for the whole layer.

Spikes: NIR fires when ``v > v_threshold`` (strict, as snnTorch's ``mem - threshold > 0``), then
sets ``v = v_reset``; ``v_reset`` must be 0. NIR cannot say that the producer subtracted instead:
``reset="subtract"`` (v -= threshold) or ``"subtract-next"`` (snnTorch's default: the threshold
subtracted at the next step after the decay, i.e. threshold / leak at once) says so. The input
of step t reaches the neuron at step t (no synaptic delay), as in snnTorch. What NIR cannot say
and snnTorch's export drops: its ``reset_mechanism`` (the default "subtract" is written as a
reset to v_reset = 0: pass ``reset="subtract-next"``; snnTorch's own ``import_from_nir`` builds
reset-to-zero neurons) and ``reset_delay``: NIR resets v right after the spike, which is
snnTorch's ``reset_delay=False``; for ``Leaky`` with reset to zero ``reset_delay=True`` gives the
same spikes, for ``Synaptic`` it does not (it holds mem at 0 for the next step), so only
``Synaptic(reset_delay=False)`` models are reproduced, as for a live snnTorch module.
snnTorch's export also needs per-neuron ``beta`` and ``threshold`` tensors (a scalar beta gives a
0-d LIF that nir 1.0.8's type check refuses) and ``ignore_dims=[0]`` (else the input shape keeps
the batch axis; a leading 1 is dropped here).

A neuron that no input can bring to its threshold within the T steps is refused, naming the
likely cause: time constants written for another dt (sinabs and spyx write IF neurons for
dt = 1).

A leaky-integrator readout (``Affine -> LI -> Output``) is ``tau dv/dt = (v_leak - v) + r I``:
``v = (1 - dt/tau) v + (r dt/tau) I + (dt/tau) v_leak`` on the host from the exact spikes; its
output is v after the last step.

Refused with one line naming the node and its type: a pool read by a neuron, ``v_reset != 0``,
a cycle without a neuron, per-neuron time constants (one decay per population), anything else. A
``.nir`` file written by neurocompile itself (a bundle's ``model.nir`` / ``source.nir``) is read
exactly by ``neurocompile.read_bundle`` / ``neurocompile.ir.nir_io.read_nir`` instead.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from .. import ir
from ..errors import NeurocompileError, NeurocompileWarning, UnsupportedModelError
from .compose import NotComposable, compose_conv, conv_matrix, sum_pool

DEFAULT_DT = 1e-4  #: snnTorch's and Norse's step (their exporters write tau for it)
DEFAULT_INPUT_SCALE = 1.0 / 16  #: digits pixels 0..16 read as pixels / 16
#: what a spike does to v in the producer (NIR itself always resets to v_reset)
RESETS = ("zero", "subtract", "subtract-next")
ARCHITECTURE = "nir"

_SYNAPSES = ("Affine", "Linear", "Conv2d")
_NEURONS = ("LIF", "CubaLIF", "IF")


def _nir():
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - nir is a core dependency
        raise UnsupportedModelError("importing NIR needs the nir package: pip install nir") from exc
    return nir


# --- reading --------------------------------------------------------------------------------------

def _load(source):
    """(NIRGraph, description) for a path or an in-memory graph."""
    nir = _nir()
    if isinstance(source, nir.NIRGraph):
        return source, "NIR graph"
    path = Path(source)
    if not path.is_file():
        raise NeurocompileError(f"{path}: no such file")
    import h5py

    if not h5py.is_hdf5(path):
        raise NeurocompileError(f"{path}: not a NIR file (not HDF5)")
    from ..ir.nir_io import read_stock

    try:
        graph = read_stock(str(path))  # our own files with an Image too, to be named as ours
    except Exception as exc:  # noqa: BLE001 - nir / h5py raise anything on foreign files
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        graph = _read_untyped(path, detail)
    return graph, str(path)


def _read_untyped(path: Path, detail: str):
    """A file nir's type check refuses (older NIR versions, slightly wrong declared shapes):
    read without the check (the importer derives every shape from the nodes' parameters), with
    one warning line; a file that cannot be read even so is refused."""
    import warnings

    try:
        graph = _nir().read(str(path), type_check=False)
    except Exception as exc:  # noqa: BLE001 - damaged beyond the type check
        raise NeurocompileError(f"{path}: cannot be read as NIR ({detail})") from exc
    warnings.warn(f"{path}: nir's type check refused the file ({detail}); read without it, "
                  "its shapes inferred from the nodes' parameters", NirTypeWarning, stacklevel=3)
    return graph


class NirTypeWarning(NeurocompileWarning):
    """A NIR file read without nir's type check (``_read_untyped``)."""


def _refuse_own(graph, where: str) -> None:
    from ..ir import nir_io

    meta = getattr(graph, "metadata", None)
    if isinstance(meta, dict) and isinstance(meta.get(nir_io.KEY), dict):
        raise NeurocompileError(
            f"{where}: written by neurocompile (a bundle's model.nir / source.nir); read it "
            "exactly with neurocompile.read_bundle(BUNDLE_DIR) or "
            "neurocompile.ir.nir_io.read_nir(path) instead of import_nir")


def _array(value) -> np.ndarray:
    return np.asarray(value)


def _storage(*arrays) -> type:
    """float32 when the file stores the parameters in float32 (snnTorch), else float64."""
    return np.float32 if all(_array(a).dtype == np.float32 for a in arrays) else np.float64


def _uniform(name: str, kind: str, field: str, values: np.ndarray) -> float:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0:
        raise UnsupportedModelError(f"NIR node {name!r} ({kind}): {field} is empty")
    if not np.allclose(flat, flat[0], rtol=1e-6, atol=0):
        raise UnsupportedModelError(f"NIR node {name!r} ({kind}): {field} differs between "
                                    "neurons; neurocompile needs one value per layer")
    return float(flat[0])


def _shape(value) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def _type_shape(types: dict | None) -> tuple[int, ...] | None:
    if not isinstance(types, dict) or len(types) != 1:
        return None
    value = next(iter(types.values()))
    return None if value is None else _shape(value)


def _flatten_subgraphs(graph, where: str):
    """The graph with every nested ``NIRGraph`` node replaced by its nodes (named
    ``outer.inner``): edges into it go to what its Input feeds, edges out of it leave from what
    feeds its Output (snnTorch's RLeaky / RSynaptic, written as subgraphs by older exporters)."""
    nir = _nir()
    while any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()):
        nodes, edges = {}, list(graph.edges)
        for outer, sub in graph.nodes.items():
            if not isinstance(sub, nir.NIRGraph):
                nodes[outer] = sub
                continue
            ins = [k for k, n in sub.nodes.items() if isinstance(n, nir.Input)]
            outs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise UnsupportedModelError(f"NIR node {outer!r} (NIRGraph): a nested graph "
                                            "needs exactly one Input and one Output")
            inner = {k: f"{outer}.{k}" for k in sub.nodes}
            for k, n in sub.nodes.items():
                if k not in (ins[0], outs[0]):
                    if inner[k] in graph.nodes:
                        raise UnsupportedModelError(f"{where}: flattening {outer!r} would give "
                                                    f"two nodes named {inner[k]!r}")
                    nodes[inner[k]] = n
            entry = [inner[d] for s_, d in sub.edges if s_ == ins[0]]
            exit_ = [inner[s_] for s_, d in sub.edges if d == outs[0]]
            body = [(inner[s_], inner[d]) for s_, d in sub.edges
                    if s_ != ins[0] and d != outs[0]]
            edges = [e for e in edges if outer not in e] \
                + [(s_, e) for s_, d in edges if d == outer for e in entry] \
                + [(x, d) for s_, d in edges if s_ == outer for x in exit_] + body
        graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False,
                             metadata=getattr(graph, "metadata", {}))
    return graph


def _back_edges(graph, preds: dict[str, list[str]]) -> set[tuple[str, str]]:
    """The edges that close recurrent connections: in every cycle (strongly connected set of
    nodes), the edges that leave a neuron for another node of the set. They carry the previous
    step's spikes (``ir.Delay``), as snnTorch's RLeaky / RSynaptic and Loihi's recurrent
    synapses do."""
    succs: dict[str, list[str]] = {n: [] for n in preds}
    for dst, srcs in preds.items():
        for src in srcs:
            succs[src].append(dst)
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(v: str):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succs[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            components.append(component)

    for v in preds:
        if v not in index:
            connect(v)
    back = set()
    for component in components:
        for src in component:
            if type(graph.nodes[src]).__name__ in _NEURONS:
                back |= {(src, dst) for dst in succs[src] if dst in component}
    return back


def _order(graph, where: str) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """Topological order of the NIR nodes without the back edges of recurrent connections
    (``_back_edges``), the forward predecessors, and the neurons each node reads one step late.
    A cycle without a neuron is refused."""
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise NeurocompileError(f"{where}: an edge names {end!r}, which is not a node")
        if src not in preds[dst]:
            preds[dst].append(src)
    back = _back_edges(graph, preds)
    late = {name: [s for s in srcs if (s, name) in back] for name, srcs in preds.items()}
    preds = {name: [s for s in srcs if (s, name) not in back] for name, srcs in preds.items()}
    order, done, visiting = [], set(), set()

    def visit(name: str, path: tuple[str, ...]):
        if name in done:
            return
        if name in visiting:
            cycle = path[path.index(name):] if name in path[:-1] else path
            raise UnsupportedModelError(f"NIR node {name!r} ({type(graph.nodes[name]).__name__}):"
                                        " a cycle without a neuron ("
                                        f"{' -> '.join(reversed(cycle))}) has no step to wait "
                                        "for: it is not a recurrent connection")
        visiting.add(name)
        for src in preds[name]:
            visit(src, path + (src,))
        visiting.discard(name)
        done.add(name)
        order.append(name)

    for name in graph.nodes:
        visit(name, (name,))
    return order, preds, late


_NAME = re.compile(r"[^A-Za-z0-9_.\-]")


class _Builder:
    """Turns NIR nodes into IR nodes, remembering the IR node (and shape) behind each NIR node."""

    def __init__(self, nir_graph, where: str, dt: float, input_op: ir.Input | None,
                 reset: str = "zero"):
        self.nir = _nir()
        self.src = nir_graph
        self.where = where
        self.dt = float(dt)
        self.input_op = input_op
        self.reset = reset
        self.graph = ir.Graph()
        self.value: dict[str, str] = {}  # NIR node -> IR node holding its value
        self.kinds: dict[str, str] = {}
        self.pending: set[str] = set()  # pools waiting to be folded into the next synapse
        self.reserved: dict[str, str] = {}  # neurons read one step late -> their IR names

    # -- helpers
    def name(self, nir_name: str) -> str:
        if nir_name in self.reserved:
            return self.reserved[nir_name]
        base = _NAME.sub("_", str(nir_name)) or "node"
        if base[0].isdigit():
            base = f"n{base}"
        name, i = base, 1
        while name in self.graph.nodes or name in self.reserved.values():
            i += 1
            name = f"{base}_{i}"
        return name

    def delayed(self, name: str, node, neuron: str) -> str:
        """An ``ir.Delay`` of NIR neuron ``neuron``'s spikes, read by the synapse ``name``."""
        if type(node).__name__ not in ("Affine", "Linear"):
            self.refuse(name, node, f"reads {neuron!r} in a recurrent connection; only an "
                                    "Affine / Linear can carry a recurrent connection")
        if neuron not in self.reserved:
            self.reserved[neuron] = self.name(neuron)
        width = np.asarray(node.weight).shape[-1]
        return self.graph.add(self.name(f"{neuron}.previous"),
                              ir.Delay(self.reserved[neuron], (int(width),)))

    def shape(self, ir_name: str) -> tuple[int, ...]:
        return _shapes(self.graph)[ir_name]

    def refuse(self, name: str, node, why: str):
        raise UnsupportedModelError(f"NIR node {name!r} ({type(node).__name__}): {why}")

    def source(self, name: str, node, preds: list[str], late: list[str] = ()) -> str:
        """The IR node holding the (summed) input of NIR node ``name``; ``late``: neurons it reads
        one step late (recurrent connections)."""
        if not preds and not late:
            self.refuse(name, node, "has no input edge")
        values = [self.value[p] for p in preds] + [self.delayed(name, node, n) for n in late]
        if len(values) == 1:
            return values[0]
        if type(node).__name__ in _NEURONS:
            if not all(isinstance(self.graph[v].op, (ir.Linear, ir.Conv2d)) for v in values):
                self.refuse(name, node, "a neuron fed by several nodes must read synapses only "
                                        "(Affine / Linear / Conv2d): their currents add up")
            return self.graph.add(self.name(f"{name}.current"), ir.CurrentSum(), values)
        return self.graph.add(self.name(f"{name}_sum"), ir.Add(), values)

    def synapses(self, src: str) -> list[str]:
        """The synapses whose currents the neuron input ``src`` sums."""
        op = self.graph[src].op
        return list(self.graph[src].inputs) if isinstance(op, ir.CurrentSum) else [src]

    # -- nodes
    def input(self, name: str, node):
        shape = _type_shape(node.input_type) or _type_shape(node.output_type)
        if not shape:
            self.refuse(name, node, "has no input shape")
        if len(shape) == 4 and shape[0] == 1:  # (1, C, H, W): a batch axis the producer kept
            shape = shape[1:]
        if self.input_op is None:
            raise AssertionError("input options missing")  # pragma: no cover
        if tuple(self.input_op.shape) != tuple(shape):
            self.refuse(name, node, f"input shape {shape} differs from the example input's "
                                    f"sample shape {tuple(self.input_op.shape)}")
        return self.graph.add(self.name(name), self.input_op)

    def pool(self, name, node, src):
        """A sum / average pooling: a depthwise convolution of ones (1 / k^2) with no neuron
        after it, folded into the synapse that reads it (``compose``)."""
        kind = type(node).__name__
        kernel = _pair(self, name, node, node.kernel_size, "kernel_size", 1)
        stride = _pair(self, name, node, node.stride, "stride", 1)
        padding = _pair(self, name, node, node.padding, "padding", 0)
        shape = self.shape(src)
        if len(shape) != 3:
            self.refuse(name, node, f"pools a {shape} tensor, not (C, H, W)")
        scale = 1.0 / (kernel[0] * kernel[1]) if kind == "AvgPool2d" else 1.0
        op = sum_pool(shape[0], kernel, stride, padding, scale)
        node_name = self.graph.add(self.name(name), op, [src])
        self.pending.add(node_name)
        return node_name

    def fold(self, name, node, src: str, op) -> tuple[str, object]:
        """``op`` reading ``src``; when ``src`` is a pending pool (through a Flatten), the pool
        folded into ``op``: ``(source, folded op)``."""
        flat = isinstance(self.graph[src].op, ir.Flatten) and \
            self.graph[src].inputs[0] in self.pending
        pool = self.graph[src].inputs[0] if flat else src
        if pool not in self.pending:
            return src, op
        inner, shape = self.graph[pool].inputs[0], self.shape(self.graph[pool].inputs[0])
        try:
            if isinstance(op, ir.Conv2d):
                return inner, compose_conv(self.graph[pool].op, op, shape[1:])
            if flat and isinstance(op, ir.Linear):
                matrix = conv_matrix(self.graph[pool].op, shape)
                flat_in = self.graph.add(self.name(f"{name}_in"), ir.Flatten(), [inner])
                return flat_in, ir.Linear(op.weight @ matrix, op.bias)
        except NotComposable as exc:
            self.refuse(name, node, f"cannot absorb the pooling before it: {exc}")
        self.refuse(name, node, "reads a pooling directly; a SumPool2d / AvgPool2d must feed a "
                                "Conv2d, or an Affine / Linear through a Flatten")

    def flatten(self, name, node, src):
        shape = self.shape(src)
        typed_out = _type_shape(node.output_type)
        if typed_out is not None:  # nir typed it: a whole-sample flatten leaves one axis > 1
            whole = sum(d != 1 for d in typed_out) <= 1 and \
                int(np.prod(typed_out)) == int(np.prod(shape))
        else:
            start, end, ndim = int(node.start_dim), int(node.end_dim), len(shape)
            whole = start in (0, -ndim) and end in (-1, ndim - 1)
        if not whole:
            self.refuse(name, node, f"flattens dims {node.start_dim}..{node.end_dim} of a "
                                    f"{shape} sample; only a flatten of the whole sample is "
                                    "supported")
        return self.graph.add(self.name(name), ir.Flatten(), [src])

    def affine(self, name, node, src):
        weight = np.asarray(node.weight, dtype=np.float64)
        bias = (np.asarray(node.bias, dtype=np.float64) if hasattr(node, "bias")
                else np.zeros(weight.shape[0]))
        shape = self.shape(src)
        if weight.ndim != 2 or len(shape) != 1 or shape[0] != weight.shape[1]:
            self.refuse(name, node, f"weight {weight.shape} does not apply to a {shape} input "
                                    "(Affine / Linear read vectors; add a Flatten)")
        src, op = self.fold(name, node, src, ir.Linear(weight, bias.reshape(-1)))
        return self.graph.add(self.name(name), op, [src])

    def conv2d(self, name, node, src):
        weight = np.asarray(node.weight, dtype=np.float64)
        if weight.ndim != 4:
            self.refuse(name, node, f"weight shape {weight.shape} is not (out, in, kh, kw)")

        stride = _pair(self, name, node, node.stride, "stride", 1)
        dilation = _pair(self, name, node, node.dilation, "dilation", 1)
        padding = node.padding
        if isinstance(padding, (bytes, np.bytes_)):  # a string as h5py may hand it back
            padding = padding.decode()
        if dilation != (1, 1):
            self.refuse(name, node, f"dilation {dilation} is not supported (only 1)")
        kh, kw = weight.shape[2:]
        if isinstance(padding, str) and padding == "valid":
            padding = (0, 0)
        elif isinstance(padding, str) and padding == "same":
            if stride != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
                self.refuse(name, node, f"padding 'same' needs stride 1 and odd kernel sizes, got "
                                        f"stride {stride} and a {kh}x{kw} kernel")
            padding = ((kh - 1) // 2, (kw - 1) // 2)
        elif isinstance(padding, str):
            self.refuse(name, node, f"padding {padding!r} is not supported ('same', 'valid' or "
                                    "integers)")
        else:
            padding = _pair(self, name, node, padding, "padding", 0)
        groups = np.asarray(node.groups)
        if groups.size != 1 or groups.dtype.kind not in "iuf" \
                or not float(groups.reshape(-1)[0]).is_integer():
            self.refuse(name, node, f"groups {node.groups!r} is not one integer")
        bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) \
            if node.bias is not None else np.zeros(weight.shape[0])
        try:
            op = ir.Conv2d(weight, np.broadcast_to(bias, (weight.shape[0],)).copy(),
                           stride=stride, padding=padding, groups=int(groups.reshape(-1)[0]))
        except ValueError as exc:
            self.refuse(name, node, str(exc))
        if len(self.shape(src)) != 3:
            self.refuse(name, node, f"reads a {self.shape(src)} tensor, not (C, H, W)")
        src, op = self.fold(name, node, src, op)
        return self.graph.add(self.name(name), op, [src])

    def _params(self, name, node, fields, size) -> dict[str, np.ndarray]:
        params = {}
        for field in fields:
            value = getattr(node, field, None)
            value = np.zeros(1) if value is None else np.asarray(value, dtype=np.float64)
            if value.size not in (1, size):
                self.refuse(name, node, f"{field} has {value.size} values for {size} neurons")
            if not np.all(np.isfinite(value)):
                self.refuse(name, node, f"{field} is not finite")
            flat = value.reshape(-1) if value.size > 1 else value.reshape(())
            params[field] = np.broadcast_to(flat, (size,)).astype(np.float64)
        if np.any(params.get("v_reset", 0) != 0):
            self.refuse(name, node, "v_reset != 0 is not supported (neurons reset to 0)")
        for field in fields:
            if field.startswith("tau") and np.any(params[field] <= 0):
                self.refuse(name, node, f"{field} {params[field].min():g} must be positive")
            if field.startswith("tau") and np.any(params[field] < self.dt):
                self.refuse(name, node, f"{field} {params[field].min():g} < dt {self.dt:g}: the "
                                        "file was written for another time step; pass dt= "
                                        "(snnTorch / Norse write for dt=1e-4)")
        return params

    def neuron(self, name, node, src):
        """LIF / CubaLIF / IF as one ``LeakyNeuron`` (forward Euler with step dt, module doc)."""
        dt, kind = self.dt, type(node).__name__
        if src in self.pending:
            self.refuse(name, node, "reads a SumPool2d / AvgPool2d directly: a pooling of spikes "
                                    "is not a spike; it must feed a Conv2d or Affine")
        shape = self.shape(src)
        size = int(np.prod(shape))
        current_leak, store = 0.0, _storage(node.r)
        if kind == "LIF":
            p = self._params(name, node, ("tau", "r", "v_leak", "v_threshold", "v_reset"), size)
            store = _storage(node.tau, node.r)
            leak = (1.0 - dt / p["tau"]).astype(store)
            gain = (p["r"] * dt / p["tau"]).astype(store)
            drive = dt / p["tau"] * p["v_leak"]
        elif kind == "CubaLIF":
            p = self._params(name, node, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                                          "v_reset", "w_in"), size)
            store = _storage(node.tau_syn, node.tau_mem, node.r)
            leak = (1.0 - dt / p["tau_mem"]).astype(store)
            current_leak = _uniform(name, kind, "current leak 1 - dt/tau_syn",
                                    (1.0 - dt / p["tau_syn"]).astype(store))
            # i = (1 - dt/tau_syn) i + (w_in dt/tau_syn) x
            # v = (1 - dt/tau_mem) v + (r dt/tau_mem) i  (from the NEW i, as snnTorch)
            gain = ((p["w_in"] * dt / p["tau_syn"]).astype(store).astype(np.float64)
                    * (p["r"] * dt / p["tau_mem"]).astype(store))
            drive = dt / p["tau_mem"] * p["v_leak"]
            if np.any(drive):
                self.refuse(name, node, "v_leak != 0 is not supported for CubaLIF")
        else:  # IF: dv/dt = r I -> v += r dt I
            p = self._params(name, node, ("r", "v_threshold", "v_reset"), size)
            leak = np.ones(size)
            gain = (p["r"] * dt).astype(store)
            drive = np.zeros(size)
        leak = _uniform(name, kind, "leak 1 - dt/tau", leak)
        if not 0.0 <= leak <= 1.0:
            self.refuse(name, node, f"leak 1 - dt/tau = {leak} must be in [0, 1]")
        gain = np.asarray(gain, dtype=np.float64)
        gain = np.where(np.abs(gain - 1.0) <= 4 * np.finfo(np.float32).eps, 1.0, gain)
        theta = p["v_threshold"]
        if np.any(gain <= 0) or np.any(theta <= 0):
            self.refuse(name, node, "the input gain and v_threshold must be positive")
        if np.all(gain == gain[0]) and np.all(theta == theta[0]) and not np.any(drive):
            op = ir.LeakyNeuron(leak=leak, gain=float(gain[0]), threshold=float(theta[0]),
                                strict=True, current_leak=current_leak,
                                reset_subtract=self.soft_reset(name, node, float(theta[0]), leak))
        else:  # fold per-neuron gain / threshold and v_leak into the synapse rows
            synapses = [self.graph[s] for s in self.synapses(src)]
            if self.graph.users(src) or any(
                    not isinstance(syn.op, (ir.Linear, ir.Conv2d))
                    or {u.name for u in self.graph.users(syn.name)} - {src} for syn in synapses):
                self.refuse(name, node, "per-neuron gains / thresholds or v_leak != 0 need "
                                        "synapses (Affine / Conv2d) that feed only this node")
            channels = synapses[0].op.weight.shape[0]
            scale = _per_channel(gain / theta, channels, name, node, self)
            extra = _per_channel(drive / theta, channels, name, node, self)
            for i, syn in enumerate(synapses):  # v_leak's drive joins the first synapse's bias
                weight = syn.op.weight * scale.reshape((-1,) + (1,) * (syn.op.weight.ndim - 1))
                syn.op = dataclasses.replace(syn.op, weight=weight,
                                             bias=syn.op.bias * scale + (extra if i == 0 else 0))
            op = ir.LeakyNeuron(leak=leak, gain=1.0, threshold=1.0, strict=True,
                                current_leak=current_leak,
                                reset_subtract=self.soft_reset(name, node, 1.0, leak))
        return self.graph.add(self.name(name), op, [src])

    def readout(self, weight: np.ndarray, bias: np.ndarray, leaky) -> ir.Readout:
        """``Readout(W, b)``, or with an LI node ``leaky = (name, node)`` after it the LI's
        membrane: ``v = (1 - dt/tau) v + (r dt/tau) (W s + b) + (dt/tau) v_leak``."""
        if leaky is None:
            return ir.Readout(weight, bias)
        name, node = leaky
        p = self._params(name, node, ("tau", "r", "v_leak"), weight.shape[0])
        leak = _uniform(name, "LI", "leak 1 - dt/tau", 1.0 - self.dt / p["tau"])
        if not 0.0 <= leak <= 1.0:
            self.refuse(name, node, f"leak 1 - dt/tau = {leak} must be in [0, 1]")
        gain = p["r"] * self.dt / p["tau"]
        return ir.Readout(weight * gain[:, None], bias * gain + self.dt / p["tau"] * p["v_leak"],
                          leak=leak)

    def soft_reset(self, name, node, threshold: float, leak: float) -> float:
        """What a spike subtracts from v (0: NIR's reset to v_reset = 0), by ``reset``."""
        if self.reset == "zero":
            return 0.0
        if self.reset == "subtract":
            return threshold
        if leak <= 0:  # "subtract-next": the threshold after the next decay = threshold / leak
            self.refuse(name, node, "a leak of 0 has no subtract-next reset")
        return threshold / leak


def _pair(builder, name, node, value, field: str, low: int) -> tuple[int, int]:
    """A per-axis NIR parameter (one integer, or one per axis (h, w)) as an (h, w) pair of
    integers >= ``low``; anything else is refused naming ``field``."""
    array = np.asarray(value) if value is not None else np.zeros(0)
    if array.size not in (1, 2) or array.dtype.kind not in "iuf" \
            or not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
        builder.refuse(name, node, f"{field} {value!r} must be one integer or one per axis (h, w)")
    h, w = (int(v) for v in np.broadcast_to(array.reshape(-1), (2,)))
    if min(h, w) < low:
        builder.refuse(name, node, f"{field} {(h, w)} must be >= {low} on both axes")
    return h, w


def _per_channel(values: np.ndarray, channels: int, name, node, builder) -> np.ndarray:
    """A per-neuron array that must be constant over the spatial axes of a (C, H, W) layer."""
    flat = values.reshape(channels, -1)
    if not np.allclose(flat, flat[:, :1], rtol=1e-6, atol=1e-12):
        builder.refuse(name, node, "parameters differ within a channel of a convolution")
    return flat[:, 0].astype(np.float64)


def _peak(graph: ir.Graph, name: str) -> float | None:
    """The largest value the node can hold (None: not bounded here)."""
    op = graph[name].op
    if isinstance(op, ir.Input):
        return op.max_value * op.scale
    if op.spiking:
        return 1.0
    if isinstance(op, (ir.Flatten, ir.Add)):
        peaks = [_peak(graph, i) for i in graph[name].inputs]
        return None if None in peaks else sum(peaks)
    return None


def _check_reachable(b: "_Builder", steps: int) -> None:
    """A neuron that no input can bring to its threshold within the steps (the file's time
    constants read with the wrong dt, e.g. sinabs' dt = 1 files at snnTorch's 1e-4) is refused."""
    for node in b.graph:
        if not isinstance(node.op, ir.LeakyNeuron):
            continue
        synapses = [b.graph[s] for s in b.synapses(node.inputs[0])]
        peaks = [_peak(b.graph, syn.inputs[0]) if isinstance(syn.op, (ir.Linear, ir.Conv2d))
                 else None for syn in synapses]
        if None in peaks:
            continue
        current = float(sum(
            np.abs(syn.op.weight).reshape(syn.op.weight.shape[0], -1).sum(axis=1) * peak
            + np.abs(syn.op.bias) for syn, peak in zip(synapses, peaks)).max())
        op = node.op
        held = 1.0 if op.current_leak == 0 else min(steps, 1 / (1 - op.current_leak))
        summed = steps if op.leak == 1 else min(steps, 1 / (1 - op.leak))
        reach = op.gain * current * held * summed  # geometric series of the decays, cut at T
        if reach < op.threshold:
            raise UnsupportedModelError(
                f"NIR node {node.name!r}: cannot reach its threshold {op.threshold:g} in {steps} "
                f"steps (at most {reach:.3g}) with its time constants read for dt = {b.dt:g}; "
                "was the file written for another step? (sinabs and spyx write IF neurons for "
                "dt = 1: pass --dt 1)")


def _shapes(graph: ir.Graph) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for node in graph.nodes.values():
        shapes[node.name] = node.op.output_shape([shapes[i] for i in node.inputs])
    return shapes


def _input_op(example_input, steps, input_scale, input_max, shape,
              spike_input: bool = False) -> tuple[ir.Input, int]:
    from .inputs import input_from_example

    if spike_input:
        if example_input is not None or input_scale is not None or input_max is not None:
            raise UnsupportedModelError("spike_input fixes the input (binary spike trains, one "
                                        "frame per step): pass steps= only")
        if type(steps) is not int or steps < 1:
            raise UnsupportedModelError(f"steps={steps!r} must be a positive integer")
        return ir.Input(shape, 1.0, 1, temporal=True), steps
    if example_input is not None:
        if steps is not None:
            raise UnsupportedModelError("pass either example_input or steps=, not both")
        op, steps = input_from_example(example_input, input_scale, input_max)
        return op, steps
    if steps is None:
        raise UnsupportedModelError("a NIR graph has no example input: pass steps= (time steps "
                                    "per sample) or example_input= (T, batch, *sample_shape)")
    if type(steps) is not int or steps < 1:
        raise UnsupportedModelError(f"steps={steps!r} must be a positive integer")
    scale = DEFAULT_INPUT_SCALE if input_scale is None else float(input_scale)
    if not (np.isfinite(scale) and scale > 0):
        raise UnsupportedModelError(f"input_scale={input_scale} must be a positive number")
    top = max(1, int(round(1.0 / scale))) if input_max is None else int(input_max)
    if top < 1:
        raise UnsupportedModelError(f"input_max={input_max} must be a positive integer")
    return ir.Input(shape, scale, top), steps


def import_nir(source, example_input=None, dt: float = DEFAULT_DT, *, steps: int | None = None,
               input_scale: float | None = None, input_max: int | None = None,
               spike_input: bool = False, reset: str = "zero") -> ir.Graph:
    """The float IR graph of a stock NIR graph (a ``.nir`` path or a ``nir.NIRGraph``).

    ``example_input`` (time-major ``(T, batch, *sample_shape)``, the same at every step) fixes the
    steps and the input grid as for ``neurocompile.compile``; without it pass ``steps=`` (the grid
    is then ``input_scale``, default 1/16, levels 0..``input_max``, default ``round(1/scale)``).
    ``dt`` is the step the file's time constants were written for (module docstring).
    ``spike_input=True`` (with ``steps=``): the input is binary spike trains, one frame per step
    (event cameras, spike-encoded data), as the NIR paper's networks take. NIR resets v to
    v_reset; ``reset`` says what the producer did instead: ``"zero"`` (NIR's own meaning),
    ``"subtract"`` (a spike subtracts the threshold: sinabs' and SpikingJelly's soft reset) or
    ``"subtract-next"`` (the threshold subtracted at the next step, after the decay: snnTorch's
    default).
    """
    if reset not in RESETS:
        raise UnsupportedModelError(f"reset={reset!r} must be one of {', '.join(RESETS)}")
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise UnsupportedModelError(f"dt={dt!r} must be a positive number")
    nir_graph, where = _load(source)
    _refuse_own(nir_graph, where)
    try:
        return _convert(nir_graph, where, example_input, float(dt), steps, input_scale, input_max,
                        spike_input, reset)
    except UnsupportedModelError as exc:
        if where != "NIR graph" and not str(exc).startswith(where):
            raise UnsupportedModelError(f"{where}: {exc}") from exc
        raise


def _convert(nir_graph, where, example_input, dt, steps, input_scale, input_max,
             spike_input=False, reset="zero") -> ir.Graph:
    nir = _nir()
    nir_graph = _flatten_subgraphs(nir_graph, where)
    order, preds, late = _order(nir_graph, where)
    inputs = [n for n in order if isinstance(nir_graph.nodes[n], nir.Input)]
    outputs = [n for n in order if isinstance(nir_graph.nodes[n], nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModelError(f"{where}: needs exactly one Input and one Output node, found "
                                    f"{len(inputs)} and {len(outputs)}")
    in_node = nir_graph.nodes[inputs[0]]
    shape = _type_shape(in_node.input_type) or _type_shape(in_node.output_type) or ()
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if not shape:
        raise UnsupportedModelError(f"NIR node {inputs[0]!r} (Input): has no shape")
    input_op, steps = _input_op(example_input, steps, input_scale, input_max, shape, spike_input)
    b = _Builder(nir_graph, where, dt, input_op, reset)
    out_pred = preds[outputs[0]]
    if len(out_pred) != 1:
        raise UnsupportedModelError(f"NIR node {outputs[0]!r} (Output): must read exactly one "
                                    f"node, reads {len(out_pred)}")
    head = out_pred[0]
    head_node = nir_graph.nodes[head]
    leaky = None  # a leaky-integrator readout (LI): its membrane is the output
    if type(head_node).__name__ == "LI":
        if len(preds[head]) != 1 or late[head]:
            b.refuse(head, head_node, "a readout must read exactly one node")
        leaky = (head, head_node)
        b.kinds[head] = "LI"
        head = preds[head][0]
        head_node = nir_graph.nodes[head]
    readout_layer = type(head_node).__name__ in ("Affine", "Linear")
    for name in order:
        node = nir_graph.nodes[name]
        kind = type(node).__name__
        b.kinds[name] = kind
        if isinstance(node, nir.Input):
            b.value[name] = b.input(name, node)
            continue
        if isinstance(node, nir.Output) or (leaky and name == leaky[0]):
            continue
        if name == head and readout_layer:
            continue  # becomes the Readout below
        src = b.source(name, node, preds[name], late[name])
        if kind == "Flatten":
            b.value[name] = b.flatten(name, node, src)
        elif kind in ("Affine", "Linear"):
            b.value[name] = b.affine(name, node, src)
        elif kind == "Conv2d":
            b.value[name] = b.conv2d(name, node, src)
        elif kind in _NEURONS:
            b.value[name] = b.neuron(name, node, src)
        elif kind in ("SumPool2d", "AvgPool2d"):
            b.value[name] = b.pool(name, node, src)
        else:
            b.refuse(name, node, "not supported (supported: Input, Affine, Linear, Conv2d, "
                                 "Flatten, SumPool2d, AvgPool2d, LIF, CubaLIF, IF, an LI "
                                 "readout, nested graphs, Output)")
    # the head: a Readout over the spikes of the last spiking node
    if readout_layer:
        src = b.source(head, head_node, preds[head])
        weight = np.asarray(head_node.weight, dtype=np.float64)
        bias = (np.asarray(head_node.bias, dtype=np.float64).reshape(-1)
                if hasattr(head_node, "bias") else np.zeros(weight.shape[0]))
        feature = b.graph[src]
        if not (feature.op.spiking or isinstance(feature.op, ir.Flatten)  # spikes, flattened
                and b.graph[feature.inputs[0]].op.spiking):
            b.refuse(head, head_node, "the output layer must read spikes (a LIF), got "
                                      f"{type(feature.op).__name__}")
        in_shape = b.shape(src)
        if len(in_shape) != 1:
            b.refuse(head, head_node, f"reads a {in_shape} tensor; add a Flatten")
        out = b.graph.add(b.name(head), b.readout(weight, bias, leaky), [src])
    else:
        src = b.value[head]
        if not b.graph[src].op.spiking:
            b.refuse(head, head_node, "the graph must end in a LIF (spike counts) or an "
                                      "Affine / Linear reading spikes (optionally into an LI)")
        shape = b.shape(src)
        if len(shape) != 1:
            src = b.graph.add(b.name(f"{head}_flat"), ir.Flatten(), [src])
            shape = b.shape(src)
        out = b.graph.add("readout", b.readout(np.eye(shape[0]), np.zeros(shape[0]), leaky),
                          [src])
    b.graph.output = out
    b.graph = b.graph.pruned()  # pools folded into their readers
    _check_reachable(b, int(steps))
    b.graph.meta = {
        "architecture": ARCHITECTURE,
        "config": {"source": where, "dt": dt,
                   "nodes": {n: b.kinds[n] for n in order if n in b.kinds},
                   "input_shape": list(input_op.shape), "input_scale": input_op.scale},
        "steps": int(steps),
    }
    try:
        b.graph.validate()
    except NeurocompileError as exc:
        raise UnsupportedModelError(f"{where}: the imported graph is invalid: {exc}") from exc
    return b.graph


def compile_nir(source, example_input=None, target="loihi2", *, dt: float = DEFAULT_DT,
                **input_options):
    """``import_nir`` then the same passes, quantization and checks as ``neurocompile.compile``;
    returns a ``Compiled`` whose ``save(dir)`` writes the bundle (``source.nir`` = the float
    graph). ``input_options``: ``steps``, ``input_scale``, ``input_max``, ``spike_input``,
    ``reset``."""
    from ..compiler import ImportedModel, _lower

    graph = import_nir(source, example_input, dt, **input_options)
    imported = ImportedModel(ARCHITECTURE, dict(graph.meta["config"]), None, graph.copy())
    where = graph.meta["config"]["source"]
    try:
        return _lower(imported, graph, target)
    except NeurocompileError as exc:  # name the file (quantization names the node)
        if where == "NIR graph" or str(exc).startswith(where):
            raise
        raise type(exc)(f"{where}: {exc}") from exc
