"""Lower an integer graph to Lava processes (Loihi 2 simulation, ``fixed_pt``).

Mapping (stock Lava processes wherever the math allows):

* ``IntConv2d`` -> ``Conv`` on Lava's (W, H, C) image layout;
* ``IntLinear`` (token-wise) -> ``Conv`` whose kernel spans the feature axis: the input tokens
  are viewed as (N, a, b) with a * b = C_in (a <= 127, Lava stores kernel sizes as int8) and the
  kernel (C_out, 1, a, b) gives (N, 1, C_out). Memory grows with the parameters (no
  block-diagonal N*C x N*C matrix), and Lava's Conv model runs C_out * b small 2-D convolutions
  per step instead of C_out * C_in;
* ``LoihiLIF`` -> ``LIFReset`` (reset every T steps, at the step each sample reaches the layer);
  with a soft reset (``vsub``) the custom ``LIFResetSubtract``;
* ``SpikeMaxPool`` -> a depthwise all-ones ``Conv`` into an OR neuron (``LIF``, vth 0, no memory);
* ``IntSSA`` -> the custom ``SpikingSelfAttention`` process;
* ``CurrentMaxPool`` (a Conv's currents pooled before its LIF) -> the custom ``CurrentMaxPool``
  process (the embedded x86 cores' work on Loihi 2), ``PositionSum`` (such currents summed over
  the positions) -> the custom ``PositionSum``; a membrane stream that needs either later than it
  comes gets a copy, like a synapse;
* ``IntSSABin``, ``IntXNORAttention`` -> the custom ``MapAttention`` process, Gray-PE bits from a
  bias-driven ``LIF`` (``lower_map_attention.py``);
* ``IntTemporalLinear`` (DS2TA's TASA) -> a Conv for tap 0 and, per older tap, a ``Sparse`` with
  a weight exponent fed through delays and phase-gated coincidence neurons; ``IntNSADAttention``
  -> ``MapAttention`` with lookup tables (``lower_ds2ta.py``);
* ``IntHeadSum``, ``IntTokenSum``, ``CoincidenceInput`` -> stock ``Sparse`` (all-ones / unit
  weights), ``SpikeBroadcast``, ``CurrentSum`` -> no process (``lower_spike_logic.py``); a
  synapse whose current is needed later than it comes (a membrane shortcut) is rebuilt for that
  population from delayed spikes;
* ``Add`` -> no process: every part of a residual sum connects to the consumer's input port, which
  sums its connections; parts that arrive early are delayed with ``DelaySparse``;
* ``Tokens`` -> nothing but a reshape of the ports: (W, H, C) -> (N, C, 1), so Lava's token order
  is w-major (n = w*H + h) where PyTorch's is row-major. Attention is permutation-equivariant and
  the readout averages, so results are unchanged; ``to_reference`` maps recordings back;
  ``Image`` reshapes such tokens back to (W, H, C) (only tokens that came from that image grid);
* vectors (F,) are Lava (1, F, 1), one token of F features;
* ``Flatten`` -> nothing but a reshape of the ports to (1, F, 1): the flat Lava element i holds
  the reference element ``order[i]`` (Lava's (W, H, C) layout is not torch's (C, H, W)), so the
  ``IntLinear`` reading it takes its weight columns in that order, ``W[:, order]``;
* ``Input`` -> a ``RingBuffer`` source sending each image T times (a temporal input: its T frames,
  one per step); ``Readout`` runs on the host;
* ``AlwaysOn`` (a CUBA neuron's synapse-bias axon) -> a stock ``LIF`` with no input and no memory
  whose bias crosses vth 0 at every step: a spike at every Lava step from step 1 (depth 0);
* ``Delay`` -> no process: an ``IntLinear`` (vectors) reading the ``Delay`` of neurons ``lif``
  that feeds ``lif`` itself (through ``CurrentSum``) is the custom ``RecurrentSparse`` from
  ``lif``'s spikes back into its input. A synapse already delivers one step late, which is the
  ``Delay``; the process sends nothing at the step ``lif`` resets (a sample's first step sees no
  spikes of the sample before). It takes no part in the depth alignment. Longer cycles (a
  ``Delay`` feeding other neurons) are refused: they cannot be aligned in a pipelined network.

Timing: every synapse delays by one step, so the value of logical step t of sample s at a node of
depth d appears at Lava step ``s*T + t + 1 + d``. Samples follow each other without gaps; the
per-layer reset offset makes each layer start every sample from zero state.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ... import ir
from ...errors import GraphError
from ...quantize.ranges import value_ranges
from . import layout
from .lower_ds2ta import LOWERINGS as DS2TA_LOWERINGS
from .lower_map_attention import LOWERINGS as MAP_ATTENTION_LOWERINGS
from .lower_spike_logic import LOWERINGS as SPIKE_LOGIC_LOWERINGS
from .lower_spike_logic import SYNAPTIC as SPIKE_LOGIC_SYNAPSES

MAX_DELAY_PER_SYNAPSE = 64  # DelaySparse delays 0..63, plus its own step


@dataclass
class Lowered:
    """A built Lava network: its processes, the ports and depth of every node, and probes."""

    procs: list
    ports: dict[str, list[tuple[object, int]]]  # node -> [(OutPort, depth)] (several for Add)
    depth: dict[str, int]
    grid: dict[str, tuple[int, int]]  # token nodes -> (H, W) of the image they came from
    probes: dict[str, object] = field(default_factory=dict)
    #: Flatten nodes -> the reference flat index of each flat Lava element
    order: dict[str, np.ndarray] = field(default_factory=dict)


def _message_bits(max_value: int) -> int:
    return 0 if max_value <= 1 else int(max_value).bit_length()


def _feature_split(channels: int, limit: int = 127) -> tuple[int, int]:
    """(a, b) with a * b = channels and a <= limit as large as possible."""
    a = max(d for d in range(1, min(channels, limit) + 1) if channels % d == 0)
    return a, channels // a


def _token_order(h: int, w: int) -> np.ndarray:
    """Lava token n_lava = w*H + h holds PyTorch token h*W + w."""
    return np.arange(h * w).reshape(h, w).T.reshape(-1)


class _Builder:
    def __init__(self, graph: ir.Graph, images: np.ndarray, steps: int, extra_steps: int):
        self.graph, self.steps = graph, steps
        self.images, self.extra_steps = images, extra_steps
        self.ranges = value_ranges(graph)
        self.out = Lowered([], {}, {}, {})
        self._delayed: dict[tuple[int, int, tuple], object] = {}
        #: synapse processes' output ports (by id) -> their node, to rebuild them at a later depth
        self.synapse_outputs: dict[int, ir.Node] = {}
        #: neurons -> the synapses reading their Delay, built with them (``recurrent_synapse``)
        self.recurrent: dict[str, list[ir.Node]] = {}

    # -- shapes and layouts ---------------------------------------------------------------------
    def shape_of(self, name: str) -> tuple[int, ...]:
        shape = self.graph.shape(name)
        if len(shape) == 3:
            c, h, w = shape
            return (w, h, c)
        if len(shape) == 1:
            return (1, shape[0], 1)
        return (shape[0], shape[1], 1)

    def to_lava(self, name: str, values: np.ndarray) -> np.ndarray:
        """A per-sample array in reference layout -> the node's Lava layout."""
        shape = self.graph.shape(name)
        if len(shape) == 3:
            return layout.chw_to_lava(values)
        if len(shape) == 1:
            return np.asarray(values).reshape(self.shape_of(name))
        h, w = self.out.grid[name]
        return values[_token_order(h, w)][..., None]

    def flat_order(self, name: str) -> np.ndarray:
        """The reference flat index held by each element of node ``name``'s flat Lava port."""
        if name in self.out.order:
            return self.out.order[name]
        shape = self.graph.shape(name)
        index = np.arange(int(np.prod(shape))).reshape(shape)
        return self.to_lava(name, index).reshape(-1) if len(shape) > 1 else index

    def flatten(self, node: ir.Node):
        """No process: the source's ports, viewed as a vector in Lava's element order."""
        self.out.order[node.name] = self.flat_order(node.inputs[0])
        return self.out.ports[node.inputs[0]]

    # -- connections ----------------------------------------------------------------------------
    def add_proc(self, proc):
        self.out.procs.append(proc)
        return proc

    @staticmethod
    def shaped(port, shape):
        return port if tuple(port.shape) == tuple(shape) else port.reshape(shape)

    def delayed(self, port, shape, delay: int, bits: int = 0):
        """``port`` delayed by ``delay`` >= 1 steps: identity ``Sparse`` (1 step) or
        ``DelaySparse`` (up to 64 steps each, chained). Delays are given as a sparse matrix: an
        int would make Lava build a dense N x N delay matrix. ``bits``: the payload of the
        messages ``port`` sends (0: binary spikes; the network input sends graded levels)."""
        from lava.proc.sparse.process import DelaySparse, Sparse
        from scipy.sparse import identity

        key = (id(port), delay, tuple(shape), bits)
        if key not in self._delayed:
            size = int(np.prod(port.shape))
            weights = identity(size, dtype=np.int32, format="csr")
            src, remaining, graded = port.flatten(), delay, bits
            while remaining > 0:
                step = min(remaining, MAX_DELAY_PER_SYNAPSE)
                if step == 1:
                    proc = Sparse(weights=weights, num_message_bits=graded)
                else:
                    delays = identity(size, dtype=int, format="csr") * (step - 1)
                    proc = DelaySparse(weights=weights, delays=delays, num_message_bits=graded)
                self.add_proc(proc)
                src.connect(proc.s_in)
                src, remaining, graded = proc.a_out, remaining - step, max(bits, 8)
            self._delayed[key] = src.reshape(shape)
        return self._delayed[key]

    def source_bits(self, name: str) -> int:
        """The payload bits of the messages behind node ``name``: the network input's levels
        (through views of it), else binary spikes (0)."""
        node = self.graph[name]
        while isinstance(node.op, (ir.Tokens, ir.Image, ir.Flatten)):
            node = self.graph[node.inputs[0]]
        return _message_bits(self.ranges[node.name].max_value) \
            if isinstance(node.op, ir.Input) else 0

    def input_depth(self, names: list[str]) -> int:
        """The latest part's depth (0 if none: a neuron fed only by its recurrent synapse)."""
        return max((d for name in names for _, d in self.out.ports[name]), default=0)

    def connect_inputs(self, names: list[str], in_port, shape, depth: int | None = None) -> int:
        """Connect every part of the named inputs to ``in_port``, aligned at ``depth`` (default:
        the latest part's); returns the depth.

        Spikes that arrive early are delayed. A synapse's output (a current, in a membrane
        shortcut) cannot be delayed on Loihi: a copy of the synapse is built instead, fed with
        its input spikes delayed (Loihi's synaptic delay; one copy per target population)."""
        depth = self.input_depth(names) if depth is None else depth
        for name in names:
            for port, d in self.out.ports[name]:
                if d < depth and id(port) in self.synapse_outputs:
                    (port, d), = self.rebuild(self.synapse_outputs[id(port)], depth)
                src = self.delayed(port, shape, depth - d, self.source_bits(name)) \
                    if d < depth else self.shaped(port, shape)
                src.connect(in_port)
        return depth

    def rebuild(self, node: ir.Node, depth: int):
        """A copy of a synapse (or of a max-pool or position sum of a synapse's currents) whose
        output comes at ``depth``."""
        if isinstance(node.op, ir.CurrentMaxPool):
            return self.current_max_pool(node, depth)
        if isinstance(node.op, ir.PositionSum):
            return self.position_sum(node, depth)
        return self.synapse(node, depth)

    # -- per-op lowerings -----------------------------------------------------------------------
    def input_(self, node: ir.Node):
        from lava.proc.io.source import RingBuffer

        shape = self.graph.shape(node.name)
        images = self.images.reshape((-1,) + shape)  # a temporal input: one frame per step
        if len(shape) == 1:  # vectors (B, F) -> (B, 1, F, 1)
            frames = images.reshape((len(images),) + self.shape_of(node.name))
        else:
            frames = layout.chw_to_lava(images)  # (B, W, H, C)
        # (B*T, W, H, C): each image T times, or the frames as they come
        data = frames if node.op.temporal else np.repeat(frames, self.steps, axis=0)
        pad = np.zeros((self.extra_steps,) + data.shape[1:], dtype=data.dtype)
        data = np.moveaxis(np.concatenate([data, pad]), 0, -1).astype(np.int32)
        return [(self.add_proc(RingBuffer(data=data)).s_out, 0)]

    def synapse(self, node: ir.Node, depth: int | None = None):
        """``IntConv2d`` / ``IntLinear`` -> ``Conv``; its output at ``depth`` (default: as early
        as its inputs allow)."""
        from lava.proc.conv.process import Conv

        op = node.op
        if isinstance(self.graph[node.inputs[0]].op, ir.Delay):
            return self.defer_recurrent(node)
        if op.weight_exp != 0:
            raise GraphError(f"{node.name}: Lava's Conv model has no weight exponent")
        in_shape = self.shape_of(node.inputs[0])
        if isinstance(op, ir.IntConv2d):
            weight = layout.torch_conv_weight_to_lava(op.weight)
            # Lava's (X, Y) = (W, H): torch's (h, w) pairs swapped
            kwargs = dict(stride=layout.hw_pair_to_xy(op.stride_hw),
                          padding=layout.hw_pair_to_xy(op.padding_hw), groups=op.groups)
        else:  # token-wise: tokens viewed as (N, a, b); torch sees (b, a, N) and a (a x 1) kernel
            out_features, in_features = op.weight.shape
            a, b = _feature_split(in_features)
            in_shape = (in_shape[0], a, b)
            matrix = op.weight
            if node.inputs[0] in self.out.order:  # a Flatten: Lava's element order
                matrix = matrix[:, self.out.order[node.inputs[0]]]
            torch_weight = matrix.reshape(out_features, a, b).transpose(0, 2, 1)[..., None]
            weight = layout.torch_conv_weight_to_lava(torch_weight)
            kwargs = {}
        bits = _message_bits(self.ranges[node.inputs[0]].max_value)
        proc = self.add_proc(Conv(weight=weight.astype(np.int32), input_shape=in_shape,
                                  num_message_bits=bits, name=node.name, **kwargs))
        depth = self.connect_inputs(node.inputs, proc.s_in, in_shape,
                                    None if depth is None else depth - 1)
        self.synapse_outputs[id(proc.a_out)] = node
        return [(proc.a_out, depth + 1)]

    def lif(self, node: ir.Node):
        from lava.proc.lif.process import LIFReset

        from .processes.lif_subtract import LIFResetSubtract

        op: ir.LoihiLIF = node.op
        full = self.graph.shape(node.name)
        depth = self.input_depth(node.inputs)
        self.check_unordered(node)
        params = dict(
            shape=self.shape_of(node.name), du=op.du, dv=op.dv, vth=op.vth,
            bias_mant=self.to_lava(node.name, np.broadcast_to(op.bias_mant, full)).astype(np.int32),
            bias_exp=self.to_lava(node.name, np.broadcast_to(op.bias_exp, full)).astype(np.int32),
            reset_interval=self.steps, reset_offset=(1 + depth) % self.steps, name=node.name)
        # a soft reset (v -= vsub) is a custom model; else stock Lava's LIF
        proc = self.add_proc(LIFResetSubtract(vsub=op.vsub, **params) if op.vsub
                             else LIFReset(**params))
        self.connect_inputs(node.inputs, proc.a_in, self.shape_of(node.name))
        for synapse in self.recurrent.pop(node.name, []):
            self.recurrent_synapse(synapse, proc, params["reset_offset"])
        self.out.probes[node.name] = proc.s_out
        return [(proc.s_out, depth)]

    def always_on(self, node: ir.Node):
        """``AlwaysOn`` -> a stock LIF with no input and no memory (du = dv = 4095) whose bias 1
        exceeds vth 0 at every step: a spike at every Lava step from step 1 (depth 0)."""
        from lava.proc.lif.process import LIF

        shape = self.graph.shape(node.name)
        if len(shape) == 2:  # (N, 1) tokens, all ones: Lava's token order changes nothing
            self.out.grid[node.name] = (shape[0], 1)
        proc = self.add_proc(LIF(shape=self.shape_of(node.name), du=4095, dv=4095, vth=0,
                                 bias_mant=1, name=node.name))
        return [(proc.s_out, 0)]  # not probed: runs compare populations, not ones

    def delay(self, node: ir.Node):
        """``Delay`` -> no process: the synapses reading it are built with its source neurons
        (``recurrent_synapse``). Checks here that each of them feeds back into those neurons."""
        op: ir.Delay = node.op
        if len(op.shape) != 1:
            raise GraphError(f"{node.name}: delays {op.source}'s spikes of shape {op.shape}; "
                             "Lava's recurrent synapses connect vectors only")
        for user in self.graph.users(node.name):
            if not isinstance(user.op, ir.IntLinear):
                raise GraphError(f"{user.name}: reads the Delay {node.name} but is not a Linear; "
                                 "in Lava a Delay can only feed a synapse")
            fed = self.neurons_fed(user.name)
            if fed != {op.source} or not isinstance(self.graph[op.source].op, ir.LoihiLIF):
                raise GraphError(f"{user.name}: a recurrent synapse from {op.source} into "
                                 f"{', '.join(sorted(fed)) or 'no neurons'}; in Lava it must feed "
                                 f"back into the neurons {op.source} themselves (a longer cycle "
                                 "cannot be aligned in a pipelined network)")
        return []

    def neurons_fed(self, name: str) -> set[str]:
        """The nodes whose input current includes synapse ``name`` (through ``CurrentSum``)."""
        return {fed for user in self.graph.users(name)
                for fed in (self.neurons_fed(user.name) if isinstance(user.op, ir.CurrentSum)
                            else [user.name])}

    def defer_recurrent(self, node: ir.Node):
        """A synapse reading a Delay: no port of its own (it takes no part in the depth
        alignment); built with the Delay's source neurons, which it feeds (``delay`` checked)."""
        source = self.graph[node.inputs[0]].op.source
        self.recurrent.setdefault(source, []).append(node)
        return []

    def recurrent_synapse(self, node: ir.Node, neurons, reset_offset: int) -> None:
        """``RecurrentSparse`` from ``neurons``' spikes back into their input port. Sparse sends
        at step k what it received at k - 1: one logical step late, the Delay, whatever the
        neurons' depth; it sends nothing at the step the neurons reset (``reset_offset``)."""
        from lava.utils.weightutils import SignMode
        from scipy.sparse import csr_matrix

        from .processes.recurrent import RecurrentSparse

        weight = node.op.weight
        # Lava's Sparse clips to 8 bits and, mixed-sign, drops the LSB: exact for Loihi's
        # mixed-sign weights; MIXED forced (the inferred mode would clip -256 when all are <= 0)
        if weight.min() < -256 or weight.max() > 254 or np.any(weight % 2):
            raise GraphError(f"{node.name}: weights must be even and in [-256, 254] (Loihi's "
                             f"mixed-sign 8-bit weights), got [{weight.min()}, {weight.max()}]")
        proc = self.add_proc(RecurrentSparse(
            weights=csr_matrix(weight.astype(np.int32)), weight_exp=int(node.op.weight_exp),
            sign_mode=SignMode.MIXED, num_message_bits=0, reset_interval=self.steps,
            reset_offset=reset_offset, name=node.name))
        neurons.s_out.flatten().connect(proc.s_in)
        proc.a_out.reshape(neurons.a_in.shape).connect(neurons.a_in)

    def max_pool(self, node: ir.Node):
        from lava.proc.conv.process import Conv
        from lava.proc.lif.process import LIF

        op: ir.SpikeMaxPool = node.op
        in_shape = self.shape_of(node.inputs[0])
        channels = in_shape[-1]
        ones = np.ones((channels, op.kernel, op.kernel, 1), dtype=np.int32)
        conv = self.add_proc(Conv(weight=ones, input_shape=in_shape, stride=op.stride,
                                  padding=op.padding, groups=channels, name=f"{node.name}.window"))
        depth = self.connect_inputs(node.inputs, conv.s_in, in_shape)
        neuron = self.add_proc(LIF(shape=self.shape_of(node.name), du=4095, dv=4095, vth=0,
                                   name=node.name))
        conv.a_out.connect(neuron.a_in)
        self.out.probes[node.name] = neuron.s_out
        return [(neuron.s_out, depth + 1)]

    def check_unordered(self, node: ir.Node) -> None:
        """Only an IntLinear can read a Flatten whose Lava order is not the reference order."""
        for src in node.inputs:
            order = self.out.order.get(src)
            if order is not None and not np.array_equal(order, np.arange(order.size)):
                raise GraphError(f"{node.name}: reads the Flatten {src}; in Lava a Flatten of an "
                                 "image or tokens can only feed a Linear")

    def ssa(self, node: ir.Node):
        from .processes.ssa import SpikingSelfAttention

        op: ir.IntSSA = node.op
        tokens, channels = self.graph.shape(node.name)
        shape = (tokens, 1, channels)
        proc = self.add_proc(SpikingSelfAttention(shape=shape, heads=op.heads, shift=op.shift,
                                                  name=node.name))
        depths = {self.connect_inputs([src], port, shape)
                  for src, port in zip(node.inputs, (proc.q_in, proc.k_in, proc.v_in))}
        if len(depths) != 1:
            raise GraphError(f"{node.name}: q, k, v arrive at different depths {sorted(depths)}")
        return [(proc.a_out, depths.pop() + 1)]

    def current_max_pool(self, node: ir.Node, depth: int | None = None):
        """``CurrentMaxPool`` -> the custom process, between the Conv and its neurons; its
        output at ``depth`` (default: as early as its inputs allow)."""
        from .processes.current_max_pool import CurrentMaxPool

        op: ir.CurrentMaxPool = node.op
        in_shape = self.shape_of(node.inputs[0])
        proc = self.add_proc(CurrentMaxPool(in_shape=in_shape, out_shape=self.shape_of(node.name),
                                            kernel=op.kernel, stride=op.stride,
                                            padding=op.padding, name=node.name))
        depth = self.connect_inputs(node.inputs, proc.a_in, in_shape,
                                    None if depth is None else depth - 1)
        self.synapse_outputs[id(proc.a_out)] = node
        return [(proc.a_out, depth + 1)]

    def position_sum(self, node: ir.Node, depth: int | None = None):
        """``PositionSum`` -> the custom process, summing a current over every position."""
        from .processes.current_max_pool import PositionSum

        in_shape = self.shape_of(node.inputs[0])
        image = len(self.graph.shape(node.inputs[0])) == 3
        proc = self.add_proc(PositionSum(in_shape=in_shape, channel_axis=2 if image else 1,
                                         name=node.name))
        depth = self.connect_inputs(node.inputs, proc.a_in, in_shape,
                                    None if depth is None else depth - 1)
        self.synapse_outputs[id(proc.a_out)] = node
        return [(proc.a_out, depth + 1)]

    def build(self) -> Lowered:
        lowerings = {ir.Input: self.input_, ir.IntConv2d: self.synapse,
                     ir.IntLinear: self.synapse, ir.LoihiLIF: self.lif,
                     ir.SpikeMaxPool: self.max_pool, ir.IntSSA: self.ssa,
                     ir.Flatten: self.flatten, ir.CurrentMaxPool: self.current_max_pool,
                     ir.PositionSum: self.position_sum, ir.AlwaysOn: self.always_on,
                     ir.Delay: self.delay}
        lowerings.update({op: functools.partial(lower_op, self)
                          for op, lower_op in MAP_ATTENTION_LOWERINGS.items()})
        lowerings.update({op: functools.partial(lower_op, self)
                          for op, lower_op in SPIKE_LOGIC_LOWERINGS.items()})
        lowerings.update({op: functools.partial(lower_op, self)
                          for op, lower_op in DS2TA_LOWERINGS.items()})
        for node in self.graph:
            op = node.op
            if node.inputs and node.inputs[0] in self.out.grid:
                self.out.grid[node.name] = self.out.grid[node.inputs[0]]
            if isinstance(op, ir.Tokens):
                _, h, w = self.graph.shape(node.inputs[0])
                self.out.grid[node.name] = (h, w)
                self.out.ports[node.name] = self.out.ports[node.inputs[0]]
            elif isinstance(op, ir.Image):
                if self.out.grid.pop(node.name, None) != (op.height, op.width):
                    raise GraphError(f"{node.name}: its tokens do not come from an image of "
                                     f"{op.height}x{op.width}, so Lava's token order is not "
                                     "that image's")
                self.out.ports[node.name] = self.out.ports[node.inputs[0]]
            elif isinstance(op, ir.Add):
                self.out.ports[node.name] = [p for i in node.inputs for p in self.out.ports[i]]
            elif isinstance(op, ir.Readout):
                continue
            elif type(op) in lowerings:
                if not isinstance(op, (ir.IntLinear, ir.Flatten, ir.LoihiLIF)):
                    self.check_unordered(node)
                self.out.ports[node.name] = lowerings[type(op)](node)
            else:
                raise GraphError(f"{node.name}: no Lava lowering for {type(op).__name__}")
            if self.out.ports[node.name]:  # not a Delay or a recurrent synapse
                self.out.depth[node.name] = self.input_depth([node.name])
        return self.out


def pipeline_depth(graph: ir.Graph) -> int:
    """Synaptic delays along the longest path (an upper bound on any node's depth)."""
    depth: dict[str, int] = {}
    for node in graph:
        base = max((depth[i] for i in node.inputs), default=0)
        adds = isinstance(node.op, (ir.IntConv2d, ir.IntLinear, ir.IntSSA, ir.SpikeMaxPool,
                                    ir.CurrentMaxPool, ir.PositionSum,
                                    *MAP_ATTENTION_LOWERINGS, *SPIKE_LOGIC_SYNAPSES,
                                    *DS2TA_LOWERINGS))
        depth[node.name] = base + (1 if adds else 0)
    return max(depth.values())


def lower(graph: ir.Graph, images: np.ndarray, steps: int) -> Lowered:
    """Build the Lava processes for ``graph`` fed with ``images`` (B, C, H, W), T = ``steps``."""
    graph.validate()
    return _Builder(graph, np.asarray(images), steps, pipeline_depth(graph)).build()


def to_reference(lowered: Lowered, graph: ir.Graph, name: str, recording: np.ndarray,
                 samples: int, steps: int) -> np.ndarray:
    """A node's recording (Lava steps, *Lava shape) -> (samples, T, *reference shape)."""
    d = lowered.depth[name]
    window = recording[d:d + samples * steps]
    window = window.reshape(samples, steps, *window.shape[1:])
    if len(graph.shape(name)) == 3:
        return layout.lava_to_chw(window)
    if len(graph.shape(name)) == 1:
        return window.reshape(samples, steps, -1)
    h, w = lowered.grid[name]
    tokens = window[..., 0]  # (samples, T, N, C) in Lava's token order
    restored = np.empty_like(tokens)
    restored[:, :, _token_order(h, w)] = tokens
    return restored
