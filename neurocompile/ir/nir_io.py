"""Our IR to and from NIR files (HDF5) that stock ``nir.read`` accepts, exactly round-tripped.

Every op becomes one standard NIR node under the op's node name (a nested ``nir.NIRGraph`` where
no single stock node fits), so tools that know NIR see the right semantics wherever NIR can
express them. The exact op (type, parameters, ordered inputs) travels in the node's
``metadata["neurocompile"]``; the graph's node order, output and ``meta`` in the graph's. Only
that metadata is read back: ``from_nir`` rebuilds the op from it, then checks that the stock
parameters in the file are still what ``to_nir`` writes for that op (a file whose weights another
tool edited is refused rather than silently half-used).

``nir.read`` type-checks every edge, which fixes two layout choices (and a graph with an
``Image`` cannot type-check: NIR has no reshape, so its file says it must be read with
``nir.read(path, type_check=False)``; so does a file with a convolution whose kernel height and
width differ when nir 1.0.8 miscomputes its output width (it types a ``Conv2d``'s output with the
kernel height on both axes); every other file passes the default check):

* token tensors, (N, C) in our IR, are channel-major (C, N) in the file (NIR has no transpose,
  so ``Tokens`` can be an honest ``Flatten`` only this way); token-wise ``Linear`` is then a
  kernel-1 ``Conv1d`` and per-token parameters are (C, N) arrays;
* grouped convolutions are written dense (block diagonal, ``groups=1``): nir 1.0.8 types a
  ``Conv2d`` input as ``weight.shape[1]`` channels whatever ``groups`` is.

Mapping (NIR time constants with dt = 1, forward Euler ``v += (v_leak - v + r*I) / tau``):

=============== ================================================================================
Input           ``Input(shape)``
Delay           ``Delay(ones)``: one step at dt = 1, its source's edge into it closes a cycle
AlwaysOn        graph ``Input -> Output``: a placeholder (always 1); the exact op is in metadata
Add             ``Scale(ones)``: NIR sums the edges into a node (an input listed twice: one edge)
Tokens          ``Flatten(start_dim=1)``: (C, H, W) -> (C, H*W)
Image           graph ``Input`` (C, H*W), ``Output`` (C, H, W), not joined: a placeholder (NIR
                has no reshape); the file needs ``nir.read(path, type_check=False)``
Flatten         ``Flatten(start_dim=0)``: (C, H, W) -> (C*H*W,) row-major (vectors unchanged);
                token tensors have no row-major NIR flatten (they are channel-major there)
SpikeMaxPool    graph ``SumPool2d -> Threshold(0)``: OR of binary spikes
Readout         graph ``Flatten -> Affine``: W @ (token mean) + b per step (mean over time too);
                ``-> LI`` with a leak (the membrane at the last step)
Conv2d          ``Conv2d`` (kh x kw kernel; stride and padding one int or an (h, w) pair)
Linear          ``Conv1d`` with kernel 1 over the (C, N) tokens; ``Affine`` on vectors (C,)
IntConv2d,      as Conv2d / Linear with weight ``W_q * 2**weight_exp`` (float) and zero bias
IntLinear
BatchNorm       ``Scale(gamma / sqrt(var + eps))``; the shift only in metadata
LIF             ``LIF(tau, r=1, v_leak=0, v_threshold)``: SpikingJelly's LIF exactly (but >=)
LeakyNeuron     ``LIF(tau=1/(1-leak), r=gain*tau, v_leak=0, v_threshold=threshold)``; ``IF(r=gain)``
                for leak 1; ``CubaLIF(tau_syn=1/(1-current_leak), w_in=tau_syn, ...)`` with a
                current decay; ``strict`` (spike at v > threshold) only in metadata
LoihiLIF        ``CubaLIF`` in units of 2**6: ``tau_syn=4096/(du+1), w_in=tau_syn,
                tau_mem=4096/max(dv, 1), r=tau_mem, v_leak=tau_mem*bias/64, v_threshold=vth``
SSA, IntSSA     graph ``Input -> Output``: a placeholder; NIR cannot multiply inputs
SSABin, XNOR... the same placeholder (and their Int forms); the exact op is in metadata
CurrentSum,     ``Scale(ones)``, like Add (a sum of currents; a_in = a + b for the coincidence
CoincidenceIn.  neuron's two unit synapses)
PositionSum     graph ``SumPool2d`` over the whole image (tokens: a kernel-N ``Conv1d`` of ones)
                ``-> Flatten``: a sum over every position
HeadSum (Int)   ``Conv1d`` kernel 1, block ones (times 2**shift): per-head spike counts
TokenSum (Int)  ``Conv1d`` kernel N, ones from each channel to itself (times 2**shift), dense
SpikeBroadcast  ``Conv1d``: kernel 1 with block ones (heads), or kernel N, padding N - 1 (tokens)
SpikeAnd        ``Threshold(1.5)`` of the summed inputs: an AND of binary spikes, exactly
TemporalWindow  (DS2TA's TASA) the placeholder: NIR has no delay; the exact op is in metadata
TemporalLinear, tap 0 only, as Linear / IntLinear (a kernel-1 ``Conv1d``); the delayed taps with
IntTemporalLin. their decays ``2**(-tau m)`` are in metadata
NSADAttention   the placeholder, like SSA (and its Int form); the lookup tables are in metadata
=============== ================================================================================
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import nir
import numpy as np

from .. import fixedpoint
from ..backends.files import write_bytes_atomic
from ..errors import NeurocompileError
from . import (attention, map_attention, membrane, neurons, spike_logic, structure, synapses,
               temporal)
from .graph import Graph
from .ops import Op

FORMAT = "neurocompile"
#: 2: op arrays stored in their smallest exact dtype (their own dtype in ``dtypes``), floats that
#: float32 holds exactly as float32, no compression; 1 (still read): as they are, gzip
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
KEY = "neurocompile"

Shape = tuple[int, ...]


# --- layout: our per-sample shapes -> NIR types --------------------------------------------------

def _nir_shape(shape: Shape) -> Shape:
    """Token tensors (N, C) are (C, N) in NIR; images and vectors keep their shape."""
    return tuple(reversed(shape)) if len(shape) == 2 else tuple(shape)


def _nir_array(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.T) if array.ndim == 2 else array


def _population(value, shape: Shape) -> np.ndarray:
    """A per-neuron parameter array in NIR layout (``value`` broadcast to our ``shape``)."""
    return _nir_array(np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy())


def _subgraph(nodes: dict, chain: list[str]) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), metadata={})


def _io(nodes: dict, in_shape: Shape, out_shape: Shape) -> dict:
    return {"input": nir.Input(np.array(in_shape)), **nodes,
            "output": nir.Output(np.array(out_shape))}


# --- op -> stock NIR node: one function per op, given our input and output shapes -------------

def _input(op: structure.Input, shape_in, shape_out):
    return nir.Input(np.array(_nir_shape(op.shape)))


def _delay(op: structure.Delay, shape_in, shape_out):
    return nir.Delay(np.ones(_nir_shape(op.shape)))


def _always_on(op: structure.AlwaysOn, shape_in, shape_out):
    shape = _nir_shape(op.shape)
    return _subgraph(_io({}, shape, shape), ["input", "output"])


def _add(op, shape_in, shape_out):
    return nir.Scale(np.ones(_nir_shape(shape_out)))


def _tokens(op, shape_in, shape_out):
    return nir.Flatten(np.array(shape_in), start_dim=1, end_dim=-1)


def _image(op, shape_in, shape_out):
    """NIR 1.0 has no node that reshapes (C, N) to (C, H, W) and cannot type an edge between the
    two, so the placeholder's Input and Output are not joined. ``nir.read`` type-checks nested
    graphs whatever it is told, adding an Input that feeds the Output and an Output the Input
    feeds (``input_output``, ``output_input``); built with that check, the file holds what
    ``nir.read`` rebuilds, which ``_rebuild`` compares."""
    return nir.NIRGraph(nodes=_io({}, _nir_shape(shape_in), shape_out), edges=[], metadata={})


def _flatten(op, shape_in, shape_out):
    """Tokens are channel-major in NIR, so a flattened token tensor is ordered c * N + n there;
    the stock Linear reading it takes its columns in that order (``_stock_node``)."""
    return nir.Flatten(np.array(_nir_shape(shape_in)), start_dim=0, end_dim=-1)


def _max_pool(op: structure.SpikeMaxPool, shape_in, shape_out):
    pair = lambda n: np.array([n, n])  # noqa: E731
    pool = nir.SumPool2d(pair(op.kernel), pair(op.stride), pair(op.padding))
    return _subgraph(_io({"pool": pool, "threshold": nir.Threshold(np.zeros(shape_out))},
                         shape_in, shape_out), ["input", "pool", "threshold", "output"])


def _current_max_pool(op: membrane.CurrentMaxPool, shape_in, shape_out):
    pair = lambda n: np.array([n, n])  # noqa: E731
    return nir.SumPool2d(pair(op.kernel), pair(op.stride), pair(op.padding))


def _position_sum(op: membrane.PositionSum, shape_in, shape_out):
    """Images: a ``SumPool2d`` over the whole image; tokens (channel-major (C, N) in NIR): a
    kernel-N ``Conv1d`` of ones from each channel to itself; then ``Flatten`` to (C,)."""
    if len(shape_in) == 3:
        whole = np.array(shape_in[1:])
        total = nir.SumPool2d(whole, whole, np.array([0, 0]))
        summed = (shape_in[0], 1, 1)
    else:
        tokens, channels = shape_in
        total = _per_channel_conv1d(channels, tokens, tokens, 0, 1.0)
        summed = (channels, 1)
    flat = nir.Flatten(np.array(summed), start_dim=0, end_dim=-1)
    return _subgraph(_io({"sum": total, "flatten": flat}, _nir_shape(shape_in), shape_out),
                     ["input", "sum", "flatten", "output"])


def _readout(op: structure.Readout, shape_in, shape_out):
    channel = _nir_array(np.broadcast_to(np.arange(shape_in[-1]), shape_in)).reshape(-1)
    tokens = int(np.prod(shape_in[:-1]))
    weight = op.weight[:, channel] / tokens  # W @ mean over tokens, on the flat NIR tensor
    flat = nir.Flatten(np.array(_nir_shape(shape_in)), start_dim=0, end_dim=-1)
    nodes = {"flatten": flat, "affine": nir.Affine(weight, op.bias.copy())}
    if op.leak == 1:  # a leaky readout without leak: dt = 1, v += r I
        nodes["li"] = nir.I(r=np.ones(shape_out))
    elif op.leak is not None:  # dt = 1: v += (r I - v) / tau, tau = 1 / (1 - leak), r = tau
        tau = np.full(shape_out, 1.0 / (1.0 - op.leak))
        nodes["li"] = nir.LI(tau=tau, r=tau.copy(), v_leak=np.zeros(shape_out))
    return _subgraph(_io(nodes, _nir_shape(shape_in), shape_out),
                     ["input", *nodes, "output"])


def _conv(weight, bias, op, shape_in):
    """Grouped weights written dense (``dense_weight``); (h, w) stride and padding."""
    return nir.Conv2d(input_shape=tuple(shape_in[1:]), weight=weight, stride=op.stride_hw,
                      padding=op.padding_hw, dilation=1, groups=1, bias=bias)


def _conv2d(op: synapses.Conv2d, shape_in, shape_out):
    return _conv(op.dense_weight(), op.bias.copy(), op, shape_in)


def _int_conv2d(op: synapses.IntConv2d, shape_in, shape_out):
    return _conv(op.dense_weight() * 2.0 ** op.weight_exp, np.zeros(op.weight.shape[0]), op,
                 shape_in)


def _token_wise(weight: np.ndarray, bias: np.ndarray, shape_in: Shape):
    if len(shape_in) == 1:
        return nir.Affine(weight, bias)
    if len(shape_in) != 2:
        raise NeurocompileError(f"a Linear on a {len(shape_in)}-D tensor {shape_in} has no NIR "
                                "form (NIR types vectors and channel-major tokens only)")
    return nir.Conv1d(input_shape=shape_in[0], weight=weight[:, :, None], stride=1, padding=0,
                      dilation=1, groups=1, bias=bias)


def _linear(op: synapses.Linear, shape_in, shape_out):
    return _token_wise(op.weight.copy(), op.bias.copy(), shape_in)


def _int_linear(op: synapses.IntLinear, shape_in, shape_out):
    return _token_wise(op.weight * 2.0 ** op.weight_exp, np.zeros(op.weight.shape[0]), shape_in)


def _batch_norm(op: synapses.BatchNorm, shape_in, shape_out):
    scale, _ = op.scale_shift()
    axes = [1] * len(shape_out)
    axes[op.channel_axis] = -1
    return nir.Scale(_population(scale.reshape(axes), shape_out))


def _lif_node(shape, tau, r, v_threshold, v_leak=0.0):
    return nir.LIF(tau=_population(tau, shape), r=_population(r, shape),
                   v_leak=_population(v_leak, shape), v_threshold=_population(v_threshold, shape),
                   v_reset=_population(0.0, shape))


def _lif(op: neurons.LIF, shape_in, shape_out):
    return _lif_node(shape_out, op.tau, 1.0, op.v_threshold)


def _leaky(op: neurons.LeakyNeuron, shape_in, shape_out):
    if op.leak == 1.0 and not op.current_leak:  # no leak: an integrate-and-fire neuron
        p = lambda value: _population(value, shape_out)  # noqa: E731
        return nir.IF(r=p(op.gain), v_threshold=p(op.threshold), v_reset=p(0.0))
    tau = 1.0 / (1.0 - op.leak) if op.leak < 1.0 else np.inf
    if not op.current_leak:
        return _lif_node(shape_out, tau, op.gain * tau if op.leak < 1.0 else op.gain,
                         op.threshold)
    tau_syn = 1.0 / (1.0 - op.current_leak)
    p = lambda value: _population(value, shape_out)  # noqa: E731
    return nir.CubaLIF(tau_syn=p(tau_syn), tau_mem=p(tau), r=p(op.gain * tau if op.leak < 1.0
                                                               else op.gain),
                       v_leak=p(0.0), v_threshold=p(op.threshold), v_reset=p(0.0),
                       w_in=p(tau_syn))


def _loihi_lif(op: neurons.LoihiLIF, shape_in, shape_out):
    tau_syn = fixedpoint.DECAY_UNITY / (op.du + 1)
    tau_mem = fixedpoint.DECAY_UNITY / max(op.dv, 1)
    unit = float(1 << fixedpoint.ACT_SHIFT)
    p = lambda value: _population(value, shape_out)  # noqa: E731
    return nir.CubaLIF(tau_syn=p(tau_syn), tau_mem=p(tau_mem), r=p(tau_mem),
                       v_leak=p(tau_mem * op.bias / unit), v_threshold=p(op.vth),
                       v_reset=p(0.0), w_in=p(tau_syn))


def _ssa(op: attention.SSA, shape_in, shape_out):
    return _subgraph(_io({}, _nir_shape(shape_in), _nir_shape(shape_out)), ["input", "output"])


def _head_ones(heads: int, channels: int) -> np.ndarray:
    """(heads, channels): 1 where channel c belongs to head h (c // (channels / heads) == h)."""
    return (np.arange(channels)[None] // (channels // heads) == np.arange(heads)[:, None]) * 1.0


def _per_channel_conv1d(channels: int, length: int, kernel: int, padding: int, gain: float):
    """``Conv1d`` with ``gain`` on every tap from channel c to channel c only, written dense (nir
    types a Conv1d input as ``weight.shape[1]`` channels whatever ``groups`` is)."""
    if channels * channels * kernel > MAX_ARRAY_ELEMENTS:
        raise NeurocompileError(f"a token sum or broadcast over {channels} channels and {kernel} "
                                "tokens is too large for its dense NIR Conv1d")
    weight = np.zeros((channels, channels, kernel))
    weight[np.arange(channels), np.arange(channels)] = gain
    return nir.Conv1d(input_shape=length, weight=weight, stride=1, padding=padding, dilation=1,
                      groups=1, bias=np.zeros(channels))


def _head_sum(op: spike_logic.HeadSum, shape_in, shape_out):
    gain = 2.0 ** getattr(op, "shift", 0)
    return _token_wise(gain * _head_ones(op.heads, shape_in[1]), np.zeros(op.heads), shape_in)


def _token_sum(op: spike_logic.TokenSum, shape_in, shape_out):
    tokens, channels = shape_in
    return _per_channel_conv1d(channels, tokens, tokens, 0, 2.0 ** getattr(op, "shift", 0))


def _spike_broadcast(op: spike_logic.SpikeBroadcast, shape_in, shape_out):
    tokens, channels = shape_out
    if op.broadcast == "heads":
        return _token_wise(_head_ones(shape_in[1], channels).T, np.zeros(channels), shape_in)
    return _per_channel_conv1d(channels, 1, tokens, tokens - 1, 1.0)


def _spike_and(op: spike_logic.SpikeAnd, shape_in, shape_out):
    return nir.Threshold(np.full(_nir_shape(shape_out), 1.5))


@dataclass(frozen=True)
class Codec:
    to_nir: Callable  #: (op, input shape, output shape) -> that node
    note: str  #: what a stock NIR reader should know (stored in the node's metadata)


_TOKENS_NOTE = "token tensors (N, C) are channel-major (C, N) in NIR"
_NEURON_NOTE = ("NIR parameters for dt = 1 (forward Euler); spikes reset v to 0 (a soft "
                "reset, subtracting, only in metadata); the exact op is in metadata")

#: op type -> codec. Reading is generic: the exact op is rebuilt from its metadata.
CODECS: dict[type, Codec] = {
    structure.Input: Codec(_input, "integer image x, real value scale * x: float graphs "
                           "read scale * x, integer graphs read x; the same x at every step, or "
                           "one frame per step when temporal"),
    structure.Delay: Codec(_delay, "the source's spikes one step late (a delay of 1 at dt = 1; "
                           "0 at a sample's first step): the back edge of a recurrent "
                           "connection, the edge source -> this node closes the cycle"),
    structure.AlwaysOn: Codec(_always_on, "neurocompile extension: spikes (1) at every step, no "
                              "input; the axon that carries a CUBA neuron's synapse bias as a "
                              "weight; the subgraph body is a placeholder"),
    structure.Add: Codec(_add, "sum of the inputs (NIR sums edges into a node)"),
    structure.Tokens: Codec(_tokens, "tokens n = h * W + w; " + _TOKENS_NOTE),
    structure.Image: Codec(_image, "tokens (C, H*W) read as an image (C, H, W), "
                           "y[c, h, w] = x[c, h * W + w]; NIR 1.0 has no reshape: the subgraph "
                           "body is a placeholder, the exact op is in metadata; read the file "
                           "with nir.read(path, type_check=False)"),
    membrane.CurrentMaxPool: Codec(_current_max_pool, "max-pool of currents; NIR has no "
                                   "max-pool: a SumPool2d stands in, the exact op is in metadata"),
    membrane.PositionSum: Codec(_position_sum, "sum of a current over every position (C,)"),
    structure.Flatten: Codec(_flatten, "row-major flatten of a sample: torch.flatten(x, 1); "
                             "of tokens: channel-major as NIR holds them, the Linear reading it "
                             "takes its columns in that order"),
    structure.SpikeMaxPool: Codec(_max_pool, "max-pool of binary spikes = OR = "
                                  "(zero-padded window sum > 0)"),
    structure.Readout: Codec(_readout, "logits = W @ mean over tokens and time + b; "
                             "the NIR graph is the per-step token mean, average it over time"),
    synapses.Conv2d: Codec(_conv2d, "grouped weights are written dense"),
    synapses.IntConv2d: Codec(_int_conv2d, "a_in = shift(W_q * x, weight_exp); NIR "
                              "weight W_q * 2**weight_exp (right shifts floor on Loihi)"),
    synapses.Linear: Codec(_linear, "token-wise y[n] = W x[n] + b: kernel-1 Conv1d "
                           "over tokens; " + _TOKENS_NOTE),
    synapses.IntLinear: Codec(_int_linear, "token-wise a_in[n] = shift(W_q x[n], "
                              "weight_exp); NIR weight W_q * 2**weight_exp; " + _TOKENS_NOTE),
    synapses.BatchNorm: Codec(_batch_norm, "NIR scale is gamma / sqrt(var + eps); the "
                              "shift beta - mean * scale is not in NIR"),
    neurons.LIF: Codec(_lif, "SpikingJelly LIF, exact for dt = 1 except spikes at "
                       "v >= v_threshold; " + _NEURON_NOTE),
    neurons.LeakyNeuron: Codec(_leaky, "v = leak v + gain x, spikes at v >= threshold; "
                               + _NEURON_NOTE),
    neurons.LoihiLIF: Codec(_loihi_lif, "Loihi 2 integer CUBA LIF; NIR u, v are "
                            "Loihi's / 2**6, truncating decays and dv = 0 approximated; "
                            + _NEURON_NOTE),
    attention.SSA: Codec(_ssa, "neurocompile extension: per head y = scale (Q K^T) V "
                         "of the ORDERED inputs (q, k, v); NIR cannot express it, the subgraph "
                         "body is a placeholder"),
    attention.IntSSA: Codec(_ssa, "neurocompile extension: per head a_in = "
                            "((Q K^T) V) << shift of the ORDERED inputs (q, k, v); NIR cannot "
                            "express it, the subgraph body is a placeholder"),
    map_attention.SSABin: Codec(_ssa, "neurocompile extension: SSA_Bin, per head y = "
                                "(Q K^T > delta) V - mean of the ORDERED inputs (q, k, v); "
                                "the subgraph body is a placeholder"),
    map_attention.IntSSABin: Codec(_ssa, "neurocompile extension: SSA_Bin, per head a_in = "
                                   "((Q K^T > delta) V) << shift of the ORDERED inputs "
                                   "(q, k, v); the subgraph body is a placeholder"),
    map_attention.XNORAttention: Codec(_ssa, "neurocompile extension: XNOR attention, per head "
                                       "y = scale (XNOR([Q,P],[K,P]) + position_bias - offset) V "
                                       "of the ORDERED inputs (q, k, v); the subgraph body is a "
                                       "placeholder"),
    map_attention.IntXNORAttention: Codec(_ssa, "neurocompile extension: XNOR attention, per "
                                          "head a_in = ((XNOR([Q,P],[K,P]) + position_bias - "
                                          "offset) V) << shift of the ORDERED inputs (q, k, v); "
                                          "the subgraph body is a placeholder"),
    membrane.CurrentSum: Codec(_add, "sum of synaptic currents (a membrane shortcut); NIR sums "
                               "edges into a node"),
    spike_logic.HeadSum: Codec(_head_sum, "spike count per token and head: kernel-1 Conv1d "
                               "with block ones; " + _TOKENS_NOTE),
    spike_logic.IntHeadSum: Codec(_head_sum, "a_in = (spike count per token and head) << shift: "
                                  "kernel-1 Conv1d with 2**shift block ones; " + _TOKENS_NOTE),
    spike_logic.TokenSum: Codec(_token_sum, "spike count per channel over the N tokens: Conv1d "
                                "with kernel N, ones from each channel to itself"),
    spike_logic.IntTokenSum: Codec(_token_sum, "a_in = (spike count per channel) << shift: Conv1d "
                                   "with kernel N, 2**shift from each channel to itself"),
    spike_logic.SpikeBroadcast: Codec(_spike_broadcast, "spikes repeated over each head's "
                                      "channels (kernel-1 Conv1d) or over the tokens (Conv1d with "
                                      "kernel N and padding N - 1)"),
    spike_logic.SpikeAnd: Codec(_spike_and, "Hadamard product (AND) of binary spikes: the sum of "
                                "the two inputs above 1.5"),
    spike_logic.CoincidenceInput: Codec(_add, "a_in = a + b: two unit-weight synapses into a "
                                        "coincidence neuron (the LoihiLIF after it)"),
}


def _temporal_linear(op: temporal.TemporalLinear, shape_in, shape_out):
    return _token_wise(op.weight.copy(), op.bias.copy(), shape_in)


def _int_temporal_linear(op: temporal.IntTemporalLinear, shape_in, shape_out):
    return _token_wise(op.weight * 2.0 ** op.weight_exp, np.zeros(op.weight.shape[0]), shape_in)


_TASA_NOTE = ("neurocompile extension: DS2TA's TASA, tap m = 0..window-1 reads the input of step "
              "t - m with weight 2**(-tau m) (zero before the sample's first step); the NIR node "
              "is tap 0 only")
CODECS.update({
    temporal.TemporalWindow: Codec(_ssa, _TASA_NOTE + ": y[t] = sum_m 2**(-tau m) x[t - m]; "
                                   "the subgraph body is a placeholder (NIR has no delay)"),
    temporal.TemporalLinear: Codec(_temporal_linear, _TASA_NOTE + ": token-wise y[t] = W sum_m "
                                   "2**(-tau m) x[t - m] + b; " + _TOKENS_NOTE),
    temporal.IntTemporalLinear: Codec(_int_temporal_linear, _TASA_NOTE + ": a_in[t] = sum_m "
                                      "shift(W_q x[t - m], weight_exp - tau m); NIR weight "
                                      "W_q * 2**weight_exp; " + _TOKENS_NOTE),
    map_attention.NSADAttention: Codec(_ssa, "neurocompile extension: DS2TA NSAD attention, per "
                                       "head y = scale table[h, Q K^T] V of the ORDERED inputs "
                                       "(q, k, v); the subgraph body is a placeholder"),
    map_attention.IntNSADAttention: Codec(_ssa, "neurocompile extension: DS2TA NSAD attention, "
                                          "per head a_in = (table[h, Q K^T] V) << shift of the "
                                          "ORDERED inputs (q, k, v); the subgraph body is a "
                                          "placeholder"),
})
_OPS = {cls.__name__: cls for cls in CODECS}


# --- values that must come back exactly (graph meta, node meta, scalar op fields) --------------

def _encode(value, where: str):
    """JSON-able form; tuples and arrays tagged, dicts with ``__`` keys wrapped (unambiguous)."""
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NeurocompileError(f"{where}: dict keys must be strings to be written to NIR")
        items = {k: _encode(v, f"{where}.{k}") for k, v in value.items()}
        return {"__dict__": items} if any(k.startswith("__") for k in value) else items
    if isinstance(value, (list, tuple)):
        items = [_encode(v, where) for v in value]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str, "shape": value.shape}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise NeurocompileError(f"{where}: a {type(value).__name__} cannot be written to NIR")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__dict__"}:
        return {k: _decode(v) for k, v in value["__dict__"].items()}
    if set(value) == {"__tuple__"}:
        return tuple(_decode(v) for v in value["__tuple__"])
    if set(value) == {"__ndarray__", "dtype", "shape"}:
        return np.array(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
    return {k: _decode(v) for k, v in value.items()}


def _dumps(value, where: str) -> str:
    return json.dumps(_encode(value, where))


def _loads(text) -> object:
    return _decode(json.loads(text))


# --- to NIR --------------------------------------------------------------------------------------

def _payload(node, op: Op) -> dict:
    arrays = op.arrays()
    params = {f.name: getattr(op, f.name) for f in dataclasses.fields(op) if f.name not in arrays}
    meta = {k: v for k, v in node.meta.items() if k != "shape"}
    return {
        "op": type(op).__name__,
        "inputs": _dumps(list(node.inputs), node.name),
        "params": _dumps(params, f"{node.name} parameters"),
        # flat (format 1 compressed them, HDF5 cannot compress 0-d arrays), reshaped on reading
        "arrays": {k: _compact(v).reshape(-1) for k, v in arrays.items()},
        "shapes": _dumps({k: v.shape for k, v in arrays.items()}, node.name),
        "dtypes": _dumps({k: v.dtype.str for k, v in arrays.items()}, node.name),
        "meta": _dumps(meta, f"{node.name} meta"),
        "note": CODECS[type(op)].note,
    }


def _check_name(name: str) -> None:
    if not name or "/" in name or "\0" in name or name == ".":
        raise NeurocompileError(f"node name {name!r} cannot be an NIR (HDF5) node name")


def _stock_node(graph: Graph, node):
    codec = CODECS.get(type(node.op))
    if codec is None:
        raise NeurocompileError(f"{node.name}: {type(node.op).__name__} has no NIR form; add it "
                                "to neurocompile.ir.nir_io.CODECS")
    shape_in = graph.shape(node.inputs[0]) if node.inputs else None
    op = node.op
    src = graph[node.inputs[0]] if node.inputs else None
    if isinstance(op, (synapses.Linear, synapses.IntLinear)) and isinstance(
            src.op, structure.Flatten) and len(graph.shape(src.inputs[0])) == 2:
        tokens, channels = graph.shape(src.inputs[0])  # NIR flat index c * N + n holds ours
        order = np.arange(tokens * channels).reshape(tokens, channels).T.reshape(-1)
        op = dataclasses.replace(op, weight=op.weight[:, order])
    return codec.to_nir(op, shape_in, graph.shape(node.name))


def nir_types_conv(conv: nir.Conv2d, shape_out: Shape) -> bool:
    """Whether nir's own output type of the stock ``conv`` is the true ``shape_out``. nir 1.0.8
    computes a ``Conv2d``'s output type with the kernel height on both axes (``weight.shape[2]``),
    so a kernel with kh != kw can get a wrong output width, which nir's type check refuses."""
    out = (conv.output_type or {}).get("output")
    return out is not None and np.array_equal(np.asarray(out), np.asarray(shape_out))


def _typed(graph: Graph) -> bool:
    """Whether NIR can type-check the graph's NIR form: not across an Image (see ``_image``),
    nor a convolution whose output type nir miscomputes (``nir_types_conv``)."""
    for node in graph:
        if isinstance(node.op, structure.Image):
            return False
        if isinstance(node.op, (synapses.Conv2d, synapses.IntConv2d)) \
                and node.op.kernel_hw[0] != node.op.kernel_hw[1] \
                and not nir_types_conv(_stock_node(graph, node), graph.shape(node.name)):
            return False
    return True


def to_nir(graph: Graph) -> nir.NIRGraph:
    """The stock NIR graph of ``graph``, with the exact IR in metadata (see module docstring)."""
    graph.validate()
    nodes, edges = {}, []
    for node in graph:
        _check_name(node.name)
        nodes[node.name] = _stock_node(graph, node)
        nodes[node.name].metadata = {KEY: _payload(node, node.op)}
        edges += [(src, node.name) for src in dict.fromkeys(graph.reads(node))]
    output = next(n for n in ("output", *(f"output_{i}" for i in range(len(nodes) + 1)))
                  if n not in nodes)
    nodes[output] = nir.Output(np.array(_nir_shape(graph.shape(graph.output))))
    edges.append((graph.output, output))
    typed = _typed(graph)
    metadata = {KEY: {"format": FORMAT, "format_version": FORMAT_VERSION,
                      "order": _dumps(list(graph.nodes), "node order"), "output": graph.output,
                      "meta": _dumps(graph.meta, "graph meta"), "layout": _TOKENS_NOTE,
                      "type_check": typed}}
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=typed)
    except (ValueError, AssertionError) as exc:  # a bug in a codec, not in the user's graph
        raise NeurocompileError(f"the NIR form of the graph does not type-check: {exc}") from exc


# --- from NIR ------------------------------------------------------------------------------------

#: limits on what a file may make us allocate: neurons per node (its NIR form holds several
#: float64 arrays of that size) and elements per weight-like array
MAX_NODE_NEURONS = 1 << 23
MAX_ARRAY_ELEMENTS = 1 << 26
_INT_LIMIT = 1 << 31


def _check_params(cls, params) -> None:
    """Scalar op fields must have their annotated type: a damaged file can hold any JSON value."""
    if not isinstance(params, dict):
        raise TypeError(f"{cls.__name__} parameters are a {type(params).__name__}, not a dict")
    kinds = {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
             for f in dataclasses.fields(cls)}
    for name, value in params.items():
        kind = kinds.get(name)
        if kind == "int":
            ok = type(value) is int and abs(value) < _INT_LIMIT
        elif kind == "float":
            ok = type(value) in (int, float) and bool(np.isfinite(value))
        elif kind == "bool":
            ok = type(value) is bool
        elif kind == "tuple[int, ...]":
            ok = isinstance(value, tuple) and all(type(v) is int and 0 < v < _INT_LIMIT
                                                  for v in value)
        elif kind == "int | tuple[int, int]":  # a stride / padding: one int or an (h, w) pair
            items = value if isinstance(value, tuple) and len(value) == 2 else (value,)
            ok = all(type(v) is int and abs(v) < _INT_LIMIT for v in items)
        else:
            continue
        if not ok:
            raise TypeError(f"{cls.__name__}.{name} must be {kind}, got {str(value)[:40]!r}")


def _compact(array: np.ndarray) -> np.ndarray:
    """``array`` in the smallest dtype of its kind that holds every value exactly (integers:
    int8/16/32, float64: float32); otherwise ``array`` itself."""
    if array.size == 0 or array.dtype.kind not in "if" or array.dtype.itemsize <= 1:
        return array
    if array.dtype.kind == "f":
        if array.dtype != np.float64:
            return array
        narrow = array.astype(np.float32)
        exact = (narrow == array).all() or np.array_equal(narrow, array, equal_nan=True)
        return narrow if exact else array
    low, high = array.min(), array.max()
    for dtype in (np.int8, np.int16, np.int32):
        if dtype().itemsize < array.dtype.itemsize and \
                np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return array.astype(dtype)
    return array


def _restore_dtypes(arrays: dict, dtypes) -> dict:
    """The op arrays back in the dtypes they had (format 2 stores them compacted)."""
    if not isinstance(dtypes, dict) or set(dtypes) != set(arrays):
        raise TypeError("array dtypes are not a dict naming every array")
    restored = {}
    for name, array in arrays.items():
        dtype = np.dtype(dtypes[name]) if isinstance(dtypes[name], str) else None
        if dtype is None or dtype.kind not in "iufb" or dtype.itemsize > 8:
            raise ValueError(f"array {name!r} has no numeric dtype")
        with np.errstate(invalid="ignore", over="ignore"):
            restored[name] = array.astype(dtype)
        if not np.array_equal(restored[name], array, equal_nan=dtype.kind == "f"):
            raise ValueError(f"array {name!r} holds values its dtype {dtype} cannot")
    return restored


def _op_from(payload: dict, version: int) -> Op:
    cls = _OPS.get(payload["op"]) if isinstance(payload.get("op"), str) else None
    if cls is None:
        raise ValueError(f"unknown op {str(payload.get('op'))[:40]!r}")
    shapes = _loads(payload["shapes"])
    if not isinstance(shapes, dict):
        raise TypeError("array shapes are not a dict")
    arrays = {k: np.asarray(payload["arrays"][k]).reshape(shape) for k, shape in shapes.items()}
    if version >= 2:  # stored compact
        arrays = _restore_dtypes(arrays, _loads(payload["dtypes"]))
    for name, array in arrays.items():  # values no op holds (and that int64 casts would wrap)
        finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if array.dtype.kind not in "iufb" or (finite.size and array.dtype.kind in "uf"
                                              and np.abs(finite).max() >= 2.0 ** 62):
            raise ValueError(f"array {name!r} holds {array.dtype} values out of range")
    params = _loads(payload["params"])
    _check_params(cls, params)
    return cls(**params, **arrays)


def _check_sizes(graph: Graph) -> None:
    """Refuse shapes that would make the NIR comparison (or a simulation) allocate huge arrays."""
    for node in graph:
        shape = graph.shape(node.name)
        if not all(int(d) >= 1 for d in shape):
            raise ValueError(f"node {node.name!r}: shape {shape} has an empty axis")
        if int(np.prod(shape, dtype=object)) > MAX_NODE_NEURONS:
            raise ValueError(f"node {node.name!r}: shape {shape} has more than "
                             f"{MAX_NODE_NEURONS} values")
        weight = getattr(node.op, "weight", None)
        if isinstance(weight, np.ndarray):
            dense = int(np.prod(weight.shape, dtype=object)) * int(getattr(node.op, "groups", 1))
            if isinstance(node.op, structure.Readout):
                dense = weight.shape[0] * int(np.prod(graph.shape(node.inputs[0]), dtype=object))
            if dense > MAX_ARRAY_ELEMENTS:
                raise ValueError(f"node {node.name!r}: its weights would take more than "
                                 f"{MAX_ARRAY_ELEMENTS} values")


def _fields(nir_node) -> dict:
    return {k: v for k, v in nir_node.to_dict().items() if k != "metadata"}


def _same(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b)
                and all(_same(a[k], b[k]) for k in a if k != "metadata"))
    return np.array_equal(np.asarray(a), np.asarray(b))


def _untyped(metadata) -> bool:
    """Whether a NIR graph's ``metadata`` says ``to_nir`` wrote it without NIR's type check
    (files from before the flag were all type-checked)."""
    info = metadata.get(KEY) if isinstance(metadata, dict) else None
    flag = info.get("type_check", True) if isinstance(info, dict) else True
    return type(flag) in (bool, np.bool_) and not flag


def _rebuild(nir_graph) -> Graph:
    info = nir_graph.metadata[KEY]
    version = info.get("format_version")
    if type(version) not in (int, np.int64) or version not in READABLE_VERSIONS:
        raise ValueError(f"format version {version!r} is not supported (this neurocompile "
                         f"reads {', '.join(map(str, READABLE_VERSIONS))}); write it again with "
                         "the neurocompile that wrote it, or re-export the model")
    graph = Graph()
    order = _loads(info["order"])
    if not isinstance(order, list) or not all(isinstance(name, str) for name in order):
        raise TypeError("the node order is not a list of names")
    for name in order:
        if name not in nir_graph.nodes:
            raise ValueError(f"node {name!r} is missing")
        stock = nir_graph.nodes[name]
        payload = stock.metadata.get(KEY)
        if not isinstance(payload, dict):
            raise ValueError(f"node {name!r} has no neurocompile metadata")
        op = _op_from(payload, int(version))
        inputs, meta = _loads(payload["inputs"]), _loads(payload["meta"])
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise TypeError(f"node {name!r}: its inputs are not a list of names")
        if not isinstance(meta, dict):
            raise TypeError(f"node {name!r}: its meta is not a dict")
        graph.add(name, op, inputs)
        graph.nodes[name].meta.update(meta)
    graph.output = info["output"]
    graph.meta = _loads(info["meta"])
    if not isinstance(graph.output, str) or not isinstance(graph.meta, dict):
        raise TypeError("the graph output or meta has the wrong type")
    graph.validate()
    _check_sizes(graph)
    if _untyped(nir_graph.metadata) == _typed(graph):  # it lets read_nir skip NIR's type check
        raise ValueError("its type_check flag disagrees with its ops")
    for node in graph:
        if not _same(_fields(nir_graph.nodes[node.name]), _fields(_stock_node(graph, node))):
            raise ValueError(f"node {node.name!r}: its NIR parameters disagree with its "
                             "neurocompile metadata (edited by another tool?)")
    return graph


def from_nir(nir_graph, source: str = "NIR graph") -> Graph:
    """The exact IR graph that ``to_nir`` wrote into ``nir_graph`` (validated)."""
    info = getattr(nir_graph, "metadata", None)
    if not isinstance(info, dict) or not isinstance(info.get(KEY), dict) \
            or info[KEY].get("format") != FORMAT:
        raise NeurocompileError(f"{source}: was not written by neurocompile; importing foreign "
                                "NIR graphs is not supported yet")
    try:
        return _rebuild(nir_graph)
    except NeurocompileError as exc:
        raise NeurocompileError(f"{source}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail anywhere while rebuilding
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise NeurocompileError(f"{source}: damaged neurocompile metadata ({detail})") from exc


# --- files ---------------------------------------------------------------------------------------

def _write_group(group: h5py.Group, values: dict) -> None:
    """``nir.write``'s layout of a node's ``to_dict()``, with compact arrays (``_compact``; stock
    integer arrays keep their dtype: nir computes shapes with them) and an array of one repeated
    value (a neuron parameter) stored as the dataset's fill value: no data, read back in full."""
    for key, value in values.items():
        if key == "metadata":
            if value != {}:
                _write_group(group.create_group(key), value)
        elif isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        elif isinstance(value, np.ndarray):
            compact = _compact if value.dtype.kind == "f" else lambda array: array
            if value.size > 1 and value.dtype.kind in "iuf" and (value == value.flat[0]).all():
                first = compact(value.reshape(-1)[:1])
                group.create_dataset(key, shape=value.shape, dtype=first.dtype,
                                     fillvalue=first[0])
            else:
                group.create_dataset(key, data=compact(value))
        elif isinstance(value, dict):
            _write_group(group.create_group(str(key)), value)
        else:
            group.create_dataset(key, data=value)


def _node_dict(node) -> dict:
    """``node.to_dict()``, without ``NIRGraph.to_dict`` copying every nested array twice (its
    ``asdict`` converts the nested nodes before it replaces them by their own ``to_dict``)."""
    if not isinstance(node, nir.NIRGraph):
        return node.to_dict()
    shell = copy.copy(node)
    shell.nodes = {}
    values = shell.to_dict()
    values["nodes"] = {name: _node_dict(child) for name, child in node.nodes.items()}
    return values


def _nir_file_bytes(graph: Graph) -> memoryview:
    """The NIR (HDF5) file of ``graph``, built in memory (uncompressed: gzip took most of an
    export's time)."""
    nir_graph = to_nir(graph)
    buffer = io.BytesIO()
    try:
        with h5py.File(buffer, "w") as file:
            file.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
            _write_group(file.create_group("node"), _node_dict(nir_graph))
    except (TypeError, ValueError) as exc:  # a value HDF5 cannot hold: a bug in a codec
        raise NeurocompileError(f"the NIR file cannot hold the graph ({exc})") from exc
    return buffer.getbuffer()


def write_nir(graph: Graph, path: str | Path) -> None:
    """Write ``graph`` to ``path`` as a NIR (HDF5) file that stock ``nir.read`` accepts (with
    ``type_check=False`` when it holds an Image). The file is built in memory, then written
    atomically (``backends.files``): a full disk leaves the previous file as it was."""
    write_bytes_atomic(path, _nir_file_bytes(graph), "NIR file")


def read_stock(path: str) -> nir.NIRGraph:
    """``nir.read`` with its type check; without it only for a file that says it was written so
    (one holding an Image), whose flag ``_rebuild`` then checks against its ops."""
    try:
        return nir.read(path)
    except Exception as exc:  # noqa: BLE001 - reported by read_nir unless the flag explains it
        typed_error = exc
    untyped = None
    with contextlib.suppress(Exception):  # a damaged file: report the typed reading's error
        untyped = nir.read(path, type_check=False)
    if not _untyped(getattr(untyped, "metadata", None)):
        raise typed_error
    return untyped


def read_nir(path: str | Path) -> Graph:
    """Read a graph written by ``write_nir``; any problem is one ``NeurocompileError`` line."""
    path = Path(path)
    if not path.is_file():
        raise NeurocompileError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise NeurocompileError(f"{path}: not a NIR file (not HDF5)")
    try:
        nir_graph = read_stock(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py and nir raise anything on damaged files
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise NeurocompileError(f"{path}: cannot be read as NIR, damaged or truncated? "
                                f"({detail})") from exc
    return from_nir(nir_graph, str(path))
