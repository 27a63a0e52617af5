"""Import a lava-dl netx HDF5 network (``.net``, what SLAYER's ``export_hdf5`` writes) as an
integer graph, and prove it against lava-dl's own ``netx.hdf5.Network`` run in Lava.

A netx file holds Loihi integers already (weights in 8-bit units, ``vThMant``, decays, bias
mantissas): nothing is quantized, each layer maps to integer IR ops directly. The semantics are
those of ``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6.0) in Lava's bit-accurate models:

=============== =================================================================================
``input``       ``ir.Input`` of the file's ``shape`` ((C, H, W) or (F,); netx reads it reversed,
                (W, H, C)). Without a neuron the network input is the first synapse's input
                (netx's ``Network.inp``). With a ``neuron`` (PilotNet, tiny.net) the input drives
                that neuron's ``a_in``, as lava-dl's tests and tutorials connect it
                (``source.s_out.connect(net.in_layer.neuron.a_in)``, the data transformed with
                ``net.in_layer.transform``): ``a_in = weight * x + bias`` with the file's scalar
                ``weight`` (default 64, netx's) and ``bias`` (default 0). In the IR: a unit
                synapse of that weight (1x1 depthwise ``IntConv2d``, or a diagonal ``IntLinear``
                for vectors) into a ``LoihiLIF``; the bias becomes the LIF bias ``bias << 6`` when
                ``iDecay = 4096`` (u keeps nothing, so a constant a_in adds ``bias << 6`` to v:
                exact), else an ``AlwaysOn`` axon of weight ``bias`` (it accumulates in u).
                With no ``input`` layer, the input is the first dense layer's input vector
                (a first conv layer cannot say its input's size: refused, as netx refuses it)
``dense``       ``IntLinear`` + ``LoihiLIF``. ``weight`` (out, in) (a flat one is reshaped as
                netx does); netx re-encodes it (``netx.utils.optimize_weight_bits``: a left shift
                by s, ``weight_exp = -s``) and Lava's Dense clips and truncates it
                (``clip_weights``, ``truncate_weights``): the IR holds the weights Lava computes
                with, ``(W' @ x) >> s``, reduced to ``W' >> s`` with no exponent when exact (it
                is for every weight in -256..254 whose encoding drops no bit)
``conv``        ``IntConv2d`` + ``LoihiLIF``: ``weight`` in torch's (out, in / groups, kh, kw)
                layout (SLAYER's, with a trailing 1 dropped as netx does), ``stride`` /
                ``padding`` as (h, w) pairs or one int (netx reverses them to Lava's (x, y)),
                ``groups``; ``dilation`` must be 1
``pool``        SLAYER's pool block: a sum pool of ``weight`` over ``kernelSize`` windows (the
                same for every channel) into neurons, i.e. a depthwise ``IntConv2d`` (groups =
                channels) + ``LoihiLIF``. netx 0.6 does not build pool layers (``create_pool``
                raises NotImplementedError): the proof runs the file with each pool layer
                rewritten as that grouped conv layer (``_rewrite_pools``), so a pool layer's
                synapse rests on our reading of SLAYER's ``synapse.Pool``; its neuron, timing and
                reset are lava-dl's
``flatten``     ``ir.Flatten`` before the next dense layer (netx transposes the (W, H, C) output
                to torch's C-H-W order); implicit between an image input and a first dense layer
neuron          ``type`` CUBA or LOIHI: ``LoihiLIF(du = iDecay - 1, dv = vDecay, vth = vThMant)``
                with ``bias`` (per channel (C,) or per neuron in netx's (W, H, C) order, or one
                per dense neuron) as ``bias_mant`` and netx's fixed ``bias_exp = 6``. Weights
                and biases are truncated to integers as netx's ``NetDict`` reads them
                (``astype(int)``)
readout         on the host: the mean spike counts of the last layer (``ir.Readout``, identity
                unless ``readout_weight`` / ``readout_bias`` say otherwise; a file written by
                ``neurocompile convert --to netx`` brings its own readout, steps, input grid and
                node names in its ``/neurocompile`` group)
=============== =================================================================================

Refused, in one line naming the file, the layer and why: recurrent blocks (``dense_rec``),
complex synapses (``dense_comp``, ``weight/real``), graded spikes (``gradedSpike``), non-zero
synaptic delays, neurons other than CUBA (SDNN sigma-delta, resonate-and-fire, ...), a refractory
delay other than 1, a neuron weight exponent (``wgtExp``, ignored by netx), ``iDecay = 0`` and
``vDecay = 4096`` (netx passes them to Lava's simulator, Loihi 2's 12-bit decays cannot hold
them), dilation, layer types netx does not build (``average``, ``concat``, ``convT``, ``unpool``)
and unknown ones, and layer shapes the file contradicts.

Time steps and resets: the graph runs every sample from zero state for ``steps`` steps (what
``reference.run_int`` computes); in lava-dl terms, ``Network(net_config=path,
input_message_bits=b, reset_interval=T, reset_offset=r)`` with samples fed back to back, ``r = 1``
when the input enters through the first synapse and ``r = 0`` when it drives the input neuron
directly (netx resets block j at ``time % T == (r + 1 + j) % T``; block j first sees a sample
``1 + j`` (input neuron) or ``2 + j`` steps after it is sent).

Proof against the source (``prove_netx``): the file itself is loaded by lava-dl's ``Network``
and run in Lava (``Loihi2SimCfg``, fixed_pt, in an isolated child with a time limit) on a few
samples; every block's spikes must equal the integer reference's, spike for spike.
``compile_netx`` refuses the file naming the first block that differs.

A netx model has no float model: the source IS lava-dl's integer network. ``verify``'s "float"
predictions for an imported netx model are those of the source (``source_predictions``: lava-dl's
``Network`` in Lava when the ``.net`` file is at hand, else the integer graph the proof tied to
it).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ir
from ..errors import NeurocompileError, UnsupportedModelError

ARCHITECTURE = "lava-dl-netx"
BIAS_EXP = 6  #: netx's fixed bias exponent (``Network.get_neuron_params``)
INPUT_WEIGHT = 64  #: netx's input transform weight when the file has none
DECAY_UNITY = 4096
#: the proof's default number of samples and time limit (seconds)
PROOF_SAMPLES = 4
PROOF_TIMEOUT_S = 600.0

_NOT_BUILT = {  # layer types lava-dl 0.6's Network does not build (or this importer refuses)
    "dense_rec": "a recurrent block (netx's RecurrentDense); its recurrent synapse carries a "
                 "sample's last spikes into the next sample, which the reset cannot clear",
    "dense_comp": "a complex-valued block (resonate-and-fire neurons)",
    "average": "an averaging block (netx's Network raises NotImplementedError on it)",
    "concat": "a concatenation (netx's Network raises NotImplementedError on it)",
    "convT": "a transposed convolution (netx's Network raises NotImplementedError on it)",
    "unpool": "an unpooling block (netx's Network raises NotImplementedError on it)",
}


class NetxImportError(UnsupportedModelError):
    """A netx file this importer refuses (the message names the file and the layer)."""


# --- reading the file ----------------------------------------------------------------------------

def _text(group, key: str) -> str:
    """A string dataset as netx's ``NetDict`` reads it (first element of a 1-element array)."""
    value = group[key][()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _ints(group, key: str) -> np.ndarray:
    """A weight / bias dataset as netx reads it: ``astype(int)`` (truncation toward zero)."""
    return np.asarray(group[key][()]).astype(np.int64)


def _array(group, key: str) -> np.ndarray:
    return np.asarray(group[key][()])


def _pair(value, what: str) -> tuple[int, int]:
    """(h, w) from one int or a pair as stored (netx reverses the stored pair to Lava's (x, y))."""
    flat = np.asarray(value).reshape(-1)
    if flat.size == 1:
        return int(flat[0]), int(flat[0])
    if flat.size != 2:
        raise ValueError(f"{what} must be one int or an (h, w) pair, got {flat.tolist()}")
    return int(flat[0]), int(flat[1])


@dataclass
class _Neuron:
    du: int
    dv: int
    vth: int


@dataclass
class NetxPlan:
    """What the proof needs to run a file (stored in ``graph.meta['config']['netx']``)."""

    blocks: list[str] = field(default_factory=list)  #: LoihiLIF node of each Network block
    input_neuron: bool = False
    input_weight: int = INPUT_WEIGHT
    input_bias: int = 0
    #: [layer index, IntConv2d node] of every pool layer (the proof rewrites them as convs)
    pools: list[list] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"blocks": list(self.blocks), "input_neuron": self.input_neuron,
                "input_weight": int(self.input_weight), "input_bias": int(self.input_bias),
                "pools": [[int(i), str(name)] for i, name in self.pools]}

    @classmethod
    def from_graph(cls, graph: ir.Graph) -> "NetxPlan":
        info = (graph.meta.get("config") or {}).get("netx")
        if not isinstance(info, dict):
            raise NeurocompileError("the graph was not imported from a lava-dl netx file (no "
                                    "netx plan in its meta)")
        return cls(list(info["blocks"]), bool(info["input_neuron"]), int(info["input_weight"]),
                   int(info["input_bias"]), [[int(i), str(n)] for i, n in info.get("pools", [])])


class _Builder:
    def __init__(self, where: str, names: list[tuple[str, str]] | None):
        self.where = where
        self.graph = ir.Graph()
        self.plan = NetxPlan()
        self.names = names  # (synapse, neuron) per block from a neurocompile-written file
        self.block = 0

    def add(self, name: str, op: ir.Op, inputs=()) -> str:
        """Add a node; it is the graph's output until the next one (so shapes can be read)."""
        self.graph.add(name, op, inputs)
        self.graph.output = name
        return name

    def refuse(self, index, kind: str, why: str):
        raise NetxImportError(f"{self.where}: layer {index} ({kind}): {why}")

    def block_names(self, index: int, kind: str) -> tuple[str, str]:
        if self.names is not None and self.block < len(self.names):
            syn, lif = self.names[self.block]
        else:
            syn, lif = f"layer{index}.{kind}", f"layer{index}"
        self.block += 1
        return syn, lif

    def neuron(self, group, index, kind: str) -> _Neuron:
        if "neuron" not in group:
            self.refuse(index, kind, "has no neuron group (netx then builds a neuron with "
                                     "iDecay 0 and vDecay 4096, which Loihi 2's 12-bit decays "
                                     "cannot hold)")
        n = group["neuron"]
        ntype = _text(n, "type") if "type" in n else "?"
        if ntype not in ("CUBA", "LOIHI"):
            self.refuse(index, kind, f"neuron type {ntype!r} is not supported (only CUBA LIF "
                                     "neurons: SDNN sigma-delta, resonate-and-fire and other "
                                     "neurons have no neurocompile form)")
        def scalar(key):
            return np.asarray(n[key][()]).reshape(-1)[0]

        if "gradedSpike" in n and bool(scalar("gradedSpike")):
            self.refuse(index, kind, "gradedSpike is True; only binary spikes are supported")
        for key in ("iDecay", "vDecay", "vThMant"):
            if key not in n:
                self.refuse(index, kind, f"the neuron has no {key}")
        i_decay, v_decay, vth = (int(scalar(k)) for k in ("iDecay", "vDecay", "vThMant"))
        if "refDelay" in n and int(scalar("refDelay")) != 1:
            self.refuse(index, kind, f"refDelay {int(scalar('refDelay'))}: a refractory period; "
                                     "neither Lava's LIF nor neurocompile's LoihiLIF has one")
        if "wgtExp" in n and int(scalar("wgtExp")) != 0:
            self.refuse(index, kind, f"wgtExp {int(scalar('wgtExp'))}: a neuron weight exponent, "
                                     "which netx's Network ignores (the trained model and "
                                     "lava-dl's network would disagree)")
        if not 1 <= i_decay <= DECAY_UNITY:
            self.refuse(index, kind, f"iDecay {i_decay} is outside 1..4096 (netx passes du = "
                                     "iDecay - 1 to Lava; Loihi 2 decays the current by du + 1 "
                                     "with a 12-bit du)")
        if not 0 <= v_decay < DECAY_UNITY:
            self.refuse(index, kind, f"vDecay {v_decay} is outside 0..4095 (Loihi 2's 12-bit "
                                     "voltage decay)")
        if vth < 0:
            self.refuse(index, kind, f"vThMant {vth} is negative")
        return _Neuron(i_decay - 1, v_decay, vth)

    def lif(self, name: str, neuron: _Neuron, bias: np.ndarray | None, shape, inputs):
        """A LoihiLIF with netx's bias (``bias_mant``, exponent 6) broadcast to ``shape``."""
        ones = (1,) * len(shape)
        if bias is None or not np.any(bias):
            mant = np.zeros(ones, dtype=np.int64)
            exp = np.zeros(ones, dtype=np.int64)
        else:
            mant = bias.astype(np.int64)
            exp = np.full(mant.shape, BIAS_EXP, dtype=np.int64)
        op = ir.LoihiLIF(du=neuron.du, dv=neuron.dv, vth=neuron.vth, bias_mant=mant,
                         bias_exp=exp)
        return self.add(name, op, inputs)


def _neurocompile_meta(handle) -> dict:
    """What a file written by neurocompile's netx exporter says about itself."""
    meta = handle.get("neurocompile")
    if meta is None:
        return {}
    out = {k: meta.attrs[k] for k in ("steps", "input_scale", "input_max", "layers", "temporal")
           if k in meta.attrs}
    for key in ("readout_weight", "readout_bias"):
        if key in meta:
            out[key] = np.asarray(meta[key][()], dtype=np.float64)
    return out


def _input_op(shape, where: str, meta: dict, input_scale, input_max, spike_input) -> ir.Input:
    if spike_input:
        if input_scale is not None or input_max is not None:
            raise NetxImportError(f"{where}: spike_input fixes the input (binary spike trains, "
                                  "one frame per step); drop input_scale / input_max")
        return ir.Input(shape, 1.0, 1, temporal=True)
    if input_scale is not None or input_max is not None:
        if input_scale is not None and not (np.isfinite(input_scale) and input_scale > 0):
            raise NetxImportError(f"{where}: input_scale={input_scale} must be a positive number")
        top = int(input_max) if input_max is not None else max(1, int(round(1.0 / input_scale)))
        if top < 1:
            raise NetxImportError(f"{where}: input_max={input_max} must be a positive integer")
        scale = float(input_scale) if input_scale is not None else 1.0 / top
        return ir.Input(shape, scale, top)
    if "input_max" in meta:  # a file written by neurocompile: its own input grid (static frames
        # unless it says ``temporal``: the exporter does not write that flag yet)
        return ir.Input(shape, float(meta.get("input_scale", 1.0)), int(meta["input_max"]),
                        temporal=bool(meta.get("temporal", False)))
    # netx's default: input_message_bits = 0, i.e. binary spikes (event streams, one per step)
    return ir.Input(shape, 1.0, 1, temporal=True)


def _message_bits(max_value: int) -> int:
    """netx's ``input_message_bits`` for integer inputs 0..max_value (0: binary spikes)."""
    return 0 if max_value <= 1 else int(max_value).bit_length()


# --- dense weights as netx + Lava compute with them ----------------------------------------------

def _netx_optimize(weight: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``lava.lib.dl.netx.utils.optimize_weight_bits`` (lava-dl 0.6.0): (weights, num_weight_bits,
    weight_exponent). Its warnings and clipping of out-of-range weights are reproduced."""
    weight = np.asarray(weight)
    max_w, min_w = np.max(weight), np.min(weight)
    if max_w > 254 and min_w < 0:
        weight = np.clip(weight, -256, 254)
        max_w = np.max(weight)
    if min_w < -256 and max_w > 0:
        weight = np.clip(weight, -256, 254)
        min_w = np.min(weight)
    if max_w < 0:
        mode, signed = "inhibitory", 0
    elif min_w >= 0:
        mode, signed = "excitatory", 0
    else:
        mode, signed = "mixed", 1
    with np.errstate(divide="ignore"):
        if mode == "mixed":
            scale = min(127 / max_w, -128 / min_w)
        elif mode == "inhibitory":
            scale = -256 / min_w
        else:
            scale = 255 / max_w if max_w else np.inf
    if not np.isfinite(scale):
        raise ValueError("all weights are zero (netx's optimize_weight_bits divides by zero)")
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(weight / 2 ** n - np.round(weight / 2 ** n))) != 0:
        n -= 1
    n -= signed
    num_weight_bits = int(8 - scale_bits - n)
    if scale_bits < 0:
        raise ValueError(f"the weights need a right shift ({scale_bits}) that netx cannot encode")
    return weight.astype(np.int64) << scale_bits, num_weight_bits, -scale_bits


def _lava_dense_weights(weight: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """Lava 0.10's bit-accurate Dense (``AbstractPyDenseModelBitAcc``): ``clip_weights(w,
    sign_mode, 8)`` then ``truncate_weights(w, sign_mode, num_weight_bits)``, the sign mode
    determined from the weights (netx passes none)."""
    w = weight.astype(np.int64)
    mixed = int(np.min(w) < 0 < np.max(w))
    inhibitory = int(not mixed and np.max(w) <= 0 and np.min(w) < 0)
    sign = -1 if inhibitory else 1
    w = sign * np.clip(sign * w, -(2 ** 8) * mixed, 2 ** 8 - 1)  # clip_weights
    drop = 8 - num_weight_bits + mixed  # truncate_weights (never negative: scale_bits >= 0)
    w = sign * (((sign * w) >> drop) << drop)
    return w


def dense_synapse(weight: np.ndarray) -> ir.IntLinear:
    """The ``IntLinear`` that computes what netx's Dense block computes in Lava with ``weight``
    (the file's integers): ``(W' @ x) >> s`` with netx's encoding ``W'`` and exponent ``-s``,
    written ``W' >> s`` without an exponent when that is exact."""
    encoded, bits, exp = _netx_optimize(weight)
    effective = _lava_dense_weights(encoded, bits)
    if exp < 0 and not np.any(effective % (1 << -exp)):
        return ir.IntLinear(effective >> -exp, 0)
    return ir.IntLinear(effective, int(exp))


# --- the importer --------------------------------------------------------------------------------

def _layer_types(layers, where: str) -> list[str]:
    count = len(layers)
    missing = [str(i) for i in range(count) if str(i) not in layers]
    if missing:
        raise NetxImportError(f"{where}: /layer holds {sorted(layers.keys())}, not 0..{count - 1} "
                              "(netx reads /layer/0, /layer/1, ... in order)")
    types = []
    for i in range(count):
        group = layers[str(i)]
        if "type" not in group:
            raise NetxImportError(f"{where}: layer {i}: has no type")
        types.append(_text(group, "type"))
    return types


def import_netx(source, *, steps: int | None = None, input_scale: float | None = None,
                input_max: int | None = None, spike_input: bool | None = None,
                readout_weight=None, readout_bias=None) -> ir.Graph:
    """The integer graph of the netx file ``source`` (module docstring), for ``steps`` time steps
    per sample (a file written by neurocompile stores its own).

    The input grid: ``spike_input=True``: binary spike trains, one frame per step (netx's default
    input, ``input_message_bits = 0``: the default for files not written by neurocompile);
    ``input_scale`` / ``input_max``: the same integer frame 0..input_max at every step, real
    value ``input_scale * x``. ``readout_weight`` (classes, F) / ``readout_bias``: the host
    readout on the last layer's F mean spike counts (default: identity)."""
    import h5py

    path = Path(source)
    where = str(path)
    if not path.is_file():
        raise NetxImportError(f"{where}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        with open(path, "rb") as fh:
            head = fh.read(64)
        hint = " (a Git LFS pointer, not the file: fetch it with git lfs pull)" \
            if head.startswith(b"version https://git-lfs") else ""
        raise NetxImportError(f"{where}: not an HDF5 file{hint} ({exc})") from exc
    with handle:
        if "layer" not in handle:
            raise NetxImportError(f"{where}: no /layer group: not a lava-dl netx network")
        meta = _neurocompile_meta(handle)
        if steps is None:
            steps = meta.get("steps")
        if steps is None:
            raise NetxImportError(f"{where}: a netx file does not say how many time steps a "
                                  "sample lasts; pass --steps T")
        if int(steps) < 1:
            raise NetxImportError(f"{where}: steps must be at least 1, got {steps}")
        names = None
        if "layers" in meta:
            names = [tuple(pair.split("->")) for pair in str(meta["layers"]).split(",") if pair]
            names = names if all(len(p) == 2 for p in names) else None
        try:
            g, plan = _build(handle["layer"], where, meta, names, input_scale, input_max,
                             spike_input)
        except NetxImportError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, NeurocompileError) as exc:
            raise NetxImportError(f"{where}: not a lava-dl netx network this importer can read "
                                  f"({type(exc).__name__}: {exc})") from exc
    last = plan.blocks[-1]
    src, shape = last, g.shape(last)
    if len(shape) != 1:
        src = g.add("flatten_out", ir.Flatten(), [last])
        shape = g.shape(src)
    features = int(shape[0])
    if readout_weight is None and "readout_weight" in meta:
        readout_weight, readout_bias = meta["readout_weight"], meta.get("readout_bias")
    weight = np.eye(features) if readout_weight is None else np.asarray(readout_weight, float)
    bias = np.zeros(weight.shape[0]) if readout_bias is None else np.asarray(readout_bias, float)
    if weight.ndim != 2 or weight.shape[1] != features:
        raise NetxImportError(f"{where}: readout_weight {weight.shape} does not read the last "
                              f"layer's {features} neurons")
    g.output = g.add("readout", ir.Readout(weight, bias), [src])
    input_op = next(n.op for n in g if isinstance(n.op, ir.Input))
    g.meta = {
        "architecture": ARCHITECTURE,
        "config": {"source": where, "netx": plan.to_json(), "input_shape": list(input_op.shape),
                   "input_scale": input_op.scale, "input_max": input_op.max_value,
                   "spike_input": bool(input_op.temporal)},
        "steps": int(steps),
    }
    try:
        g.validate()
    except NeurocompileError as exc:
        raise NetxImportError(f"{where}: the imported graph is invalid: {exc}") from exc
    return g


def _build(layers, where, meta, names, input_scale, input_max, spike_input):
    b = _Builder(where, names)
    g = b.graph
    types = _layer_types(layers, where)
    if not types:
        raise NetxImportError(f"{where}: /layer is empty")
    for i, kind in enumerate(types):
        if kind in _NOT_BUILT:
            b.refuse(i, kind, _NOT_BUILT[kind])
        if kind not in ("input", "dense", "conv", "pool", "flatten"):
            b.refuse(i, kind, "unknown layer type (netx builds input, dense, conv and flatten "
                              "layers; this importer also reads SLAYER's pool)")
        if kind == "input" and i:
            b.refuse(i, kind, "an input layer must come first")
    start = 0
    raw_input = True  # the current value is the network input itself (no neuron yet)
    if types[0] == "input":
        group = layers["0"]
        if "shape" not in group:
            b.refuse(0, "input", "has no shape")
        shape = tuple(int(s) for s in np.atleast_1d(_array(group, "shape")))
        if len(shape) == 3 and shape[1:] == (1, 1) and "neuron" not in group \
                and len(types) > 1 and types[1] in ("dense", "flatten"):
            shape = shape[:1]  # a vector stored as (F, 1, 1)
        if len(shape) not in (1, 3) or min(shape) < 1:
            b.refuse(0, "input", f"shape {list(shape)} is neither (C, H, W) nor (F,)")
        op = _input_op(shape, where, meta, input_scale, input_max, spike_input)
        current = b.add("input", op)
        if "neuron" in group:
            current = _input_neuron(b, group, current, shape)
            raw_input = False
        start = 1
    else:
        if types[0] != "dense":
            b.refuse(0, types[0], "the network has no input layer, so its input shape is "
                                  "unknown (netx refuses it too); add an input layer with a "
                                  "shape, or start with a dense layer")
        weight = _ints(layers["0"], "weight")
        rows = int(np.prod(np.atleast_1d(_array(layers["0"], "shape"))))
        cols = weight.shape[1] if weight.ndim == 2 else weight.size // max(rows, 1)
        op = _input_op((int(cols),), where, meta, input_scale, input_max, spike_input)
        current = b.add("input", op)
    flatten = None  # the index of a flatten layer waiting for its dense layer
    for i in range(start, len(types)):
        kind, group = types[i], layers[str(i)]
        if kind == "flatten":
            flatten = i
            continue
        if "delay" in group and np.any(_array(group, "delay")):
            b.refuse(i, kind, "has synaptic delays; netx builds them with DelayDense, which "
                              "neurocompile does not express")
        if "weight/imag" in group or "weight/real" in group:
            b.refuse(i, kind, "has complex weights (weight/real, weight/imag)")
        if "weight" not in group:
            b.refuse(i, kind, "has no weight")
        in_shape = g.shape(current)
        if kind == "dense":
            if len(in_shape) != 1:
                if flatten is None and not raw_input:
                    b.refuse(i, kind, f"reads the {tuple(in_shape)} image of the layer before "
                                      "it without a flatten layer")
                name = f"layer{i}.flatten" if flatten is None else f"layer{flatten}"
                current = b.add(name, ir.Flatten(), [current])
                in_shape = g.shape(current)
            current = _dense(b, i, group, current, int(in_shape[0]))
        else:
            if flatten is not None or len(in_shape) != 3:
                b.refuse(i, kind, f"reads a {tuple(in_shape)} tensor; convolutions and pools "
                                  "read (C, H, W) images")
            current = _conv(b, i, kind, group, current, in_shape)
        flatten = None
        raw_input = False
    if not b.plan.blocks:
        raise NetxImportError(f"{where}: the network has no neuron layer")
    return g, b.plan


def _input_neuron(b: _Builder, group, current: str, shape) -> str:
    """The input layer's neuron: ``a_in = weight * x + bias`` (module docstring)."""
    neuron = b.neuron(group, 0, "input")
    values = {}
    for key, default in (("weight", INPUT_WEIGHT), ("bias", 0)):
        if key in group:
            v = _ints(group, key).reshape(-1)
            if v.size != 1:
                b.refuse(0, "input", f"{key} has {v.size} values; netx's input transform takes "
                                     "one scalar")
            values[key] = int(v[0])
        else:
            values[key] = default
    w, bias = values["weight"], values["bias"]
    b.plan.input_neuron, b.plan.input_weight, b.plan.input_bias = True, w, bias
    syn_name, lif_name = "layer0.input", "layer0"

    def unit(name, weight, src):
        if len(shape) == 3:
            c = shape[0]
            return b.add(name, ir.IntConv2d(np.full((c, 1, 1, 1), weight, np.int64), groups=c),
                         [src])
        return b.add(name, ir.IntLinear(np.eye(shape[0], dtype=np.int64) * weight), [src])

    inputs = [unit(syn_name, w, current)]
    lif_bias = None
    if bias:
        if neuron.du == DECAY_UNITY - 1:  # u keeps nothing: a constant a_in is a v bias
            lif_bias = np.full((1,) * len(shape), bias, dtype=np.int64)
        else:
            axon = b.add("layer0.bias_axon", ir.AlwaysOn(shape))
            inputs.append(unit("layer0.bias", bias, axon))
    lif = b.lif(lif_name, neuron, lif_bias, shape, inputs)
    b.plan.blocks.append(lif)
    return lif


def _dense(b: _Builder, i: int, group, current: str, features: int) -> str:
    shape = np.atleast_1d(_array(group, "shape")) if "shape" in group else None
    weight = _ints(group, "weight")
    rows = int(np.prod(shape)) if shape is not None else (weight.shape[0] if weight.ndim == 2
                                                          else None)
    if rows is None:
        b.refuse(i, "dense", "has a flat weight and no shape")
    if weight.ndim == 1:
        if weight.size % rows:
            b.refuse(i, "dense", f"weight of {weight.size} values does not split into {rows} rows")
        weight = weight.reshape(rows, -1)
    if weight.ndim != 2 or weight.shape[0] != rows:
        b.refuse(i, "dense", f"weight {weight.shape} does not match the layer's {rows} neurons")
    if weight.shape[1] != features:
        b.refuse(i, "dense", f"weight {weight.shape} reads {weight.shape[1]} inputs, the layer "
                             f"before it gives {features}")
    neuron = b.neuron(group, i, "dense")
    try:
        op = dense_synapse(weight)
    except ValueError as exc:
        b.refuse(i, "dense", str(exc))
    bias = None
    if "bias" in group:
        bias = _ints(group, "bias").reshape(-1)
        if bias.size != rows:
            b.refuse(i, "dense", f"bias of {bias.size} values for {rows} neurons")
    syn_name, lif_name = b.block_names(i, "dense")
    syn = b.add(syn_name, op, [current])
    lif = b.lif(lif_name, neuron, bias, (rows,), [syn])
    b.plan.blocks.append(lif)
    return lif


def _conv(b: _Builder, i: int, kind: str, group, current: str, in_shape) -> str:
    channels = int(in_shape[0])
    weight = _ints(group, "weight")
    try:
        dilation = _pair(_array(group, "dilation"), "dilation") if "dilation" in group else (1, 1)
        if kind == "conv":
            if weight.ndim > 4:  # SLAYER's (out, in, kh, kw, 1): netx keeps the first four axes
                weight = weight.reshape(weight.shape[:4])
            if weight.ndim != 4:
                b.refuse(i, kind, f"weight {weight.shape} is not (out, in / groups, kh, kw)")
            groups = int(np.asarray(_array(group, "groups")).reshape(-1)[0]) \
                if "groups" in group else 1
            stride = _pair(_array(group, "stride"), "stride") if "stride" in group else (1, 1)
        else:  # SLAYER's pool: one (kh, kw) window of weights, the same for every channel
            kernel = _pair(_array(group, "kernelSize"), "kernelSize") \
                if "kernelSize" in group else None
            squeezed = weight.reshape([d for d in weight.shape if d != 1] or [1])
            if squeezed.size == 1:
                if kernel is None:
                    b.refuse(i, kind, "has one weight and no kernelSize")
                window = np.full(kernel, int(squeezed.reshape(-1)[0]), dtype=np.int64)
            elif squeezed.ndim == 2 and kernel in (None, tuple(squeezed.shape)):
                window = squeezed
            else:
                b.refuse(i, kind, f"weight {weight.shape} is not one window of kernelSize "
                                  f"{kernel}")
            kernel = tuple(int(k) for k in window.shape)
            weight = np.broadcast_to(window, (channels, 1) + kernel).copy()
            groups = channels
            stride = _pair(_array(group, "stride"), "stride") if "stride" in group else kernel
        padding = _pair(_array(group, "padding"), "padding") if "padding" in group else (0, 0)
    except ValueError as exc:
        b.refuse(i, kind, str(exc))
    if dilation != (1, 1):
        b.refuse(i, kind, f"dilation {dilation}: neurocompile's convolutions have no dilation")
    try:
        op = ir.IntConv2d(weight, stride=stride, padding=padding, groups=groups)
        out_shape = op.output_shape([tuple(in_shape)])
    except ValueError as exc:
        b.refuse(i, kind, str(exc))
    if "shape" in group:
        stored = tuple(int(s) for s in np.atleast_1d(_array(group, "shape")))
        if stored != tuple(out_shape):
            why = (" (SLAYER's pool pads odd sizes at the bottom / right, which a symmetric "
                   "padding cannot say)" if kind == "pool" else "")
            b.refuse(i, kind, f"the file says its neurons are {list(stored)}, the "
                              f"{'pool' if kind == 'pool' else 'convolution'} of a "
                              f"{list(in_shape)} input gives {list(out_shape)}{why}")
    neuron = b.neuron(group, i, kind)
    bias = None
    if "bias" in group:
        raw = _ints(group, "bias")
        c, h, w = out_shape
        if raw.shape == (w, h, c):  # per neuron, netx's (W, H, C) order
            bias = raw.transpose(2, 1, 0)
        elif raw.ndim >= 1 and raw.shape[0] == c and raw.size == c:  # per channel
            bias = raw.reshape(c, 1, 1)
        else:
            b.refuse(i, kind, f"bias {raw.shape} is neither per channel ({c},) nor per neuron "
                              f"(W, H, C) = {(w, h, c)}")
    syn_name, lif_name = b.block_names(i, kind)
    syn = b.add(syn_name, op, [current])
    lif = b.lif(lif_name, neuron, bias, out_shape, [syn])
    b.plan.blocks.append(lif)
    if kind == "pool":
        b.plan.pools.append([i, syn])
    return lif


# --- the proof against lava-dl's Network ---------------------------------------------------------

def _rewrite_pools(path: str, graph: ir.Graph, plan: NetxPlan, out: str) -> None:
    """A copy of ``path`` with every pool layer rewritten as the grouped conv layer it is (netx
    0.6 does not build pool layers): the IR's depthwise weight in the file's torch layout, the
    layer's stride, padding, shape, bias and neuron unchanged."""
    import h5py

    pools = {int(i): name for i, name in plan.pools}
    with h5py.File(path, "r") as src, h5py.File(out, "w") as dst:
        for key in src:
            if key != "layer":
                src.copy(src[key], dst, name=key)
        layers = dst.create_group("layer")
        for i in range(len(src["layer"])):
            group = src["layer"][str(i)]
            if i not in pools:
                src.copy(group, layers, name=str(i))
                continue
            op: ir.IntConv2d = graph[pools[i]].op
            g = layers.create_group(str(i))
            g.create_dataset("type", (1,), "S10", [b"conv"])
            g.create_dataset("shape", data=np.array(graph.shape(pools[i]), dtype=np.int64))
            g.create_dataset("weight", data=op.weight.astype(np.int64))
            g.create_dataset("stride", data=np.array(op.stride_hw, dtype=np.int64))
            g.create_dataset("padding", data=np.array(op.padding_hw, dtype=np.int64))
            g.create_dataset("dilation", data=np.array((1, 1), dtype=np.int64))
            g.create_dataset("groups", data=int(op.groups))
            for key in ("bias", "neuron"):
                if key in group:
                    src.copy(group[key], g, name=key)


def _record_source(path: str, frames: np.ndarray, steps: int, bits: int, reset_offset: int,
                   input_neuron: bool, chunk: int):
    """In the Lava child: lava-dl's Network on ``frames`` ((B*T, *port shape) integer rows, one
    per Lava step), every block's spikes recorded."""
    from lava.lib.dl.netx.hdf5 import Network
    from lava.proc.io.source import RingBuffer

    from ..backends.lava.runtime import record

    net = Network(net_config=str(path), input_message_bits=bits, reset_interval=steps,
                  reset_offset=reset_offset)
    port = net.in_layer.neuron.a_in if input_neuron else net.inp
    total = len(frames) + len(net.layers) + 1
    data = frames.reshape((len(frames),) + tuple(port.shape))
    pad = np.zeros((total - len(data),) + data.shape[1:], dtype=data.dtype)
    data = np.moveaxis(np.concatenate([data, pad]), 0, -1).astype(np.int32)
    source = RingBuffer(data=data)
    source.s_out.connect(port)
    probes = {str(j): block.neuron.s_out for j, block in enumerate(net.layers)}
    return record([source], probes, total, chunk, dtype=np.int8)


def _frames(graph: ir.Graph, plan: NetxPlan, samples: np.ndarray, steps: int) -> np.ndarray:
    """One row per Lava step (B*T rows), in the port's layout: netx's (W, H, C) for images, flat
    C-H-W row-major vectors; ``weight * x + bias`` when the input drives the input neuron."""
    from ..backends.lava import layout

    op = next(n.op for n in graph if isinstance(n.op, ir.Input))
    x = np.asarray(samples).astype(np.int64)
    per_step = x.reshape((-1,) + op.shape) if op.temporal else \
        np.repeat(x, steps, axis=0)  # (B*T, *shape)
    if plan.input_neuron:
        per_step = per_step * plan.input_weight + plan.input_bias
    first = graph.users(next(n.name for n in graph if isinstance(n.op, ir.Input)))[0]
    if len(op.shape) == 3 and not isinstance(first.op, ir.Flatten):
        return layout.chw_to_lava(per_step)
    return per_step.reshape(len(per_step), -1)


def run_source(path: str | Path, graph: ir.Graph, samples: np.ndarray, steps: int | None = None,
               *, timeout_s: float = PROOF_TIMEOUT_S, chunk: int = 256
               ) -> dict[str, np.ndarray]:
    """lava-dl's ``Network`` on the netx file ``path`` (``graph`` is its import), run in Lava
    (Loihi2SimCfg, fixed_pt, isolated, ``timeout_s``) on integer ``samples`` ((B, *shape), or
    (B, T, *shape) for spike trains): ``{LoihiLIF node: spikes (B, T, *shape)}`` for every block,
    in the reference layout."""
    from ..backends.lava.runtime import run_isolated

    plan = NetxPlan.from_graph(graph)
    steps = int(graph.meta["steps"] if steps is None else steps)
    samples = np.asarray(samples)
    batch = len(samples)
    op = next(n.op for n in graph if isinstance(n.op, ir.Input))
    frames = _frames(graph, plan, samples, steps)
    first_depth = 0 if plan.input_neuron else 1
    bits = 0 if plan.input_neuron else _message_bits(op.max_value)
    with tempfile.TemporaryDirectory(prefix="neurocompile-netx-") as tmp:
        run_path = str(path)
        if plan.pools:
            run_path = str(Path(tmp) / "pools_as_convs.net")
            _rewrite_pools(str(path), graph, plan, run_path)
        recordings = run_isolated(_record_source, run_path, frames, steps, bits, first_depth,
                                  plan.input_neuron, chunk, timeout_s=timeout_s)
    if len(recordings) != len(plan.blocks):
        raise NeurocompileError(f"{path}: lava-dl's Network built {len(recordings)} blocks, the "
                                f"import has {len(plan.blocks)}")
    out = {}
    for j, name in enumerate(plan.blocks):
        depth = j + first_depth  # row r = Lava step r + 1; block j: step s*T + t + 1 + depth
        rows = recordings[str(j)][depth:depth + batch * steps]
        shape = graph.shape(name)
        if len(shape) == 3:
            rows = rows.transpose(0, 3, 2, 1)  # Lava (W, H, C) -> (C, H, W)
        out[name] = rows.reshape((batch, steps) + tuple(shape)).astype(np.int8)
    return out


@dataclass
class ProofResult:
    """What ``prove_netx`` compared: None in ``difference`` when every spike agreed."""

    difference: tuple[str, int] | None
    samples: int
    spikes_compared: int
    spikes: int  #: spikes the source emitted (0 would make the comparison vacuous)


def prove(path: str | Path, graph: ir.Graph, samples: np.ndarray, steps: int | None = None, *,
          timeout_s: float = PROOF_TIMEOUT_S) -> ProofResult:
    """``prove_netx`` with the counts."""
    from ..backends.reference import run_int

    plan = NetxPlan.from_graph(graph)
    steps = int(graph.meta["steps"] if steps is None else steps)
    samples = np.asarray(samples)
    source = run_source(path, graph, samples, steps, timeout_s=timeout_s)
    reference = run_int(graph, samples, steps, record=plan.blocks)
    compared = spikes = 0
    for name in plan.blocks:
        ours, theirs = reference.outputs[name], source[name]
        compared += theirs.size
        spikes += int(theirs.sum())
        wrong = int(np.count_nonzero(ours != theirs))
        if wrong:
            return ProofResult((name, wrong), len(samples), compared, spikes)
    return ProofResult(None, len(samples), compared, spikes)


def prove_netx(path: str | Path, graph: ir.Graph, samples: np.ndarray,
               steps: int | None = None, *, timeout_s: float = PROOF_TIMEOUT_S
               ) -> tuple[str, int] | None:
    """Run lava-dl's ``Network`` on the file ``path`` in Lava and the integer reference on
    ``graph`` (its import) on the same integer ``samples``; the first block whose spikes differ,
    as (LoihiLIF node, number of differing spikes), or None when all agree."""
    return prove(path, graph, samples, steps, timeout_s=timeout_s).difference


def proof_samples(graph: ir.Graph, count: int = PROOF_SAMPLES, seed: int = 0) -> np.ndarray:
    """``count`` deterministic integer inputs for the proof, from sparse to dense (binary spike
    trains for a spike input, levels 0..max for static frames)."""
    op = next(n.op for n in graph if isinstance(n.op, ir.Input))
    steps = int(graph.meta["steps"])
    rng = np.random.default_rng(seed)
    shape = ((steps,) if op.temporal else ()) + op.shape
    out = []
    for k in range(count):
        density = (k + 1) / (count + 1)
        mask = rng.random(shape) < density
        levels = rng.integers(1, op.max_value + 1, shape)
        out.append(np.where(mask, levels, 0))
    return np.stack(out).astype(np.int64)


def source_predictions(graph: ir.Graph, images: np.ndarray, steps: int | None = None,
                       net_path: str | Path | None = None, *,
                       timeout_s: float = PROOF_TIMEOUT_S) -> np.ndarray:
    """The source model's class predictions (what ``verify`` calls the float model's) for an
    imported netx graph: lava-dl's ``Network`` run in Lava on the file ``net_path`` with the
    host readout, or, without the file, the integer graph the compile-time proof tied to it."""
    from ..backends.reference import run_int
    from ..backends.reference.common import readout

    steps = int(graph.meta["steps"] if steps is None else steps)
    if net_path is None:
        return run_int(graph, np.asarray(images), steps, record=()).predictions()
    spikes = run_source(net_path, graph, images, steps, timeout_s=timeout_s)
    plan = NetxPlan.from_graph(graph)
    out = graph[graph.output]
    last = spikes[plan.blocks[-1]].astype(np.int64)
    features = last.reshape(last.shape[0], last.shape[1], -1)
    state: dict = {}
    logits = None
    for t in range(steps):
        logits = readout(out.op, [features[:, t]], state, t)
    return np.asarray(logits).argmax(-1)


# --- compile -------------------------------------------------------------------------------------

def _layers(graph: ir.Graph, plan: NetxPlan):
    """One ``LayerQuantization`` per block: the file's integers, as written (no scaling)."""
    from ..quantize.loihi2 import LayerQuantization, _current_bound
    from ..quantize.ranges import value_ranges

    ranges = value_ranges(graph)
    out = []
    for name in plan.blocks:
        lif = graph[name]
        bound = 0
        weights = 0
        for syn_name in lif.inputs:
            syn = graph[syn_name]
            source = syn.inputs[0]
            top = int(ranges[source].max_value) if source in ranges else 1
            bound += _current_bound(syn.op.weight, top)
            weights = max(weights, int(np.abs(syn.op.weight).max()))
        first = graph[lif.inputs[0]]
        top = int(ranges[first.inputs[0]].max_value) if first.inputs[0] in ranges else 1
        out.append(LayerQuantization(name, first.name, 1.0, int(lif.op.vth), int(lif.op.dv),
                                     weights, top, bound,
                                     ["imported from lava-dl netx: the file's integers, "
                                      "not quantized (alpha 1)"]))
    return out


def compile_netx(source, target="loihi2", *, steps: int | None = None,
                 input_scale: float | None = None, input_max: int | None = None,
                 spike_input: bool | None = None, readout_weight=None, readout_bias=None,
                 samples=None, prove_against_source: bool = True,
                 timeout_s: float = PROOF_TIMEOUT_S):
    """``import_netx``, the proof against lava-dl's ``Network`` (``samples``: integer inputs,
    default ``proof_samples``), then the target's checks; returns a ``compiler.Compiled`` whose
    ``save(dir)`` writes the bundle. Refuses, naming the first differing block, when lava-dl's
    network and the import disagree on a single spike."""
    from ..compiler import Compiled, ImportedModel, _target
    from ..quantize import QuantizedGraph, check_overflow
    from ..quantize.limits import check_limits

    target = _target(target)  # before the (long) proof
    graph = import_netx(source, steps=steps, input_scale=input_scale, input_max=input_max,
                        spike_input=spike_input, readout_weight=readout_weight,
                        readout_bias=readout_bias)
    from ..bundle import MAX_STEPS

    if not 1 <= graph.meta["steps"] <= MAX_STEPS:
        raise NetxImportError(f"{source}: steps must be an integer in 1..{MAX_STEPS}, got "
                              f"{graph.meta['steps']}")
    plan = NetxPlan.from_graph(graph)
    if prove_against_source:
        batch = proof_samples(graph) if samples is None else np.asarray(samples)
        from ..evaluate import check_images

        batch = check_images(batch, graph, "samples")
        try:
            result = prove(source, graph, batch, timeout_s=timeout_s)
        except NeurocompileError:
            raise
        except Exception as exc:  # Lava's own failures (LavaRunError, timeouts): one line
            raise NeurocompileError(f"{source}: lava-dl's Network could not be run to prove the "
                                    f"import ({type(exc).__name__}: {str(exc).splitlines()[0]})"
                                    ) from exc
        if result.difference is not None:
            name, count = result.difference
            raise NeurocompileError(
                f"{source}: {name}: the import differs from lava-dl's Network in {count} spikes "
                f"on {result.samples} samples (first differing layer); not compiled")
        graph.meta["config"]["proof"] = {"samples": result.samples,
                                         "spikes_compared": result.spikes_compared,
                                         "source_spikes": result.spikes}
    graph.meta["target"] = target.name
    config = dict(graph.meta["config"])
    imported = ImportedModel(ARCHITECTURE, config, None, graph.copy())
    quantized = QuantizedGraph(graph, _layers(graph, plan))
    return Compiled(imported, target, graph, quantized, check_overflow(graph, target),
                    check_limits(graph, target))


__all__ = ["ARCHITECTURE", "NetxImportError", "NetxPlan", "ProofResult", "import_netx",
           "compile_netx", "prove_netx", "prove", "run_source", "proof_samples",
           "source_predictions", "dense_synapse"]
