"""Pin down the Lava 0.10 semantics the compiler's lowering relies on.

Every network runs with ``Loihi2SimCfg(select_tag='fixed_pt')`` inside ``run_isolated`` (a forked,
time-limited child) and is compared EXACTLY (np.array_equal) with numpy or
``neurocompile.fixedpoint``.

Conventions found here (row t of a recorded array = what the port sent at Lava time step t + 1):
* Lava's ``time_step`` starts at 1; a RingBuffer sends ``data[..., t]`` in row t.
* OutPort -> InPort connections (RingBuffer -> LIF.a_in, LIF -> Extractor) have no delay.
* Dense, Conv, Sparse and the custom SSA process delay their output by exactly one step.
* DelaySparse with delay d delays binary spikes by d + 1 steps in total.
* An InPort fed by several OutPorts receives their sum (before a binary Conv casts it to bool).
"""
from __future__ import annotations


import numpy as np
import pytest
import scipy.sparse as sp
import torch

from neurocompile import fixedpoint
from neurocompile.backends.lava.layout import (
    chw_to_lava, hw_pair_to_xy, lava_conv_weight_to_torch, lava_to_chw, linear_weight_to_lava_conv,
    torch_conv_weight_to_lava,
)
from neurocompile.backends.lava.runtime import record, run_isolated

TIMEOUT_S = 60
lava_test = [pytest.mark.lava, pytest.mark.timeout(120)]


def _ring(data_tlast):
    from lava.proc.io.source import RingBuffer

    return RingBuffer(data=np.ascontiguousarray(data_tlast, dtype=np.int32))


def _time_last(x_tfirst: np.ndarray) -> np.ndarray:
    """(T, ...) -> (..., T), the layout a RingBuffer wants."""
    return np.moveaxis(np.asarray(x_tfirst), 0, -1)


def _delayed(x: np.ndarray, d: int) -> np.ndarray:
    """Shift a (T, ...) array by d steps along time, zeros first."""
    out = np.zeros_like(x)
    if d < len(x):
        out[d:] = x[:len(x) - d]
    return out


def _torch_conv(x_chw_t: np.ndarray, w: np.ndarray, stride, padding, groups=1) -> np.ndarray:
    """Exact integer conv2d through torch (float64) per step: (T, C, H, W) -> (T, O, H', W')."""
    out = torch.nn.functional.conv2d(torch.from_numpy(x_chw_t.astype(np.float64)),
                                     torch.from_numpy(w.astype(np.float64)),
                                     stride=stride, padding=padding, groups=groups)
    return out.numpy().astype(np.int64)


# --------------------------------------------------------------------------------------------------
# layout helpers (no Lava run)
# --------------------------------------------------------------------------------------------------

def test_layout_roundtrip_and_shapes():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, size=(2, 5, 3, 4, 6))  # (B, T, C, H, W)
    lx = chw_to_lava(x)
    assert lx.shape == (2, 5, 6, 4, 3)
    assert lx[1, 2, 5, 3, 1] == x[1, 2, 1, 3, 5]
    assert np.array_equal(lava_to_chw(lx), x)
    t = torch.from_numpy(x)
    assert torch.equal(chw_to_lava(t), torch.from_numpy(np.ascontiguousarray(lx)))
    w = rng.integers(-5, 5, size=(7, 3, 3, 2))
    lw = torch_conv_weight_to_lava(w)
    assert lw.shape == (7, 2, 3, 3)
    assert np.array_equal(lava_conv_weight_to_torch(lw), w)
    assert linear_weight_to_lava_conv(rng.integers(0, 3, size=(4, 9))).shape == (4, 1, 1, 9)
    assert hw_pair_to_xy((2, 1)) == (1, 2) and hw_pair_to_xy(3) == (3, 3)


@pytest.mark.parametrize("case", ["s2p1", "rect", "depthwise"])
def test_lava_conv_formula_matches_torch_without_runtime(case):
    """Lava's own conv function (lava.proc.conv.utils.conv) on the converted layouts == torch."""
    from lava.proc.conv import utils

    rng = np.random.default_rng(1)
    c, h, w_ = 3, 7, 6
    if case == "s2p1":
        w, stride, pad, groups = rng.integers(-128, 128, size=(4, c, 3, 3)), (2, 2), (1, 1), 1
    elif case == "rect":
        w, stride, pad, groups = rng.integers(-128, 128, size=(5, c, 3, 2)), (2, 1), (1, 0), 1
    else:
        w, stride, pad, groups = rng.integers(-128, 128, size=(c, 1, 3, 3)), (1, 2), (1, 1), c
    x = rng.integers(-50, 200, size=(c, h, w_))
    ref = _torch_conv(x[None], w, stride, pad, groups)[0]
    lw = torch_conv_weight_to_lava(w).astype(np.int32)
    got = utils.conv(chw_to_lava(x), lw, lw.shape[1:3], hw_pair_to_xy(stride), hw_pair_to_xy(pad),
                     (1, 1), groups)
    assert np.array_equal(lava_to_chw(got), ref)
    # without the flip, Lava would compute something else (true convolution, not correlation)
    unflipped = w.transpose(0, 3, 2, 1).astype(np.int32)
    bad = utils.conv(chw_to_lava(x), unflipped, unflipped.shape[1:3], hw_pair_to_xy(stride),
                     hw_pair_to_xy(pad), (1, 1), groups)
    assert not np.array_equal(lava_to_chw(bad), ref)


def test_linear_as_1x1_conv_formula():
    from lava.proc.conv import utils

    rng = np.random.default_rng(2)
    wl = rng.integers(-128, 128, size=(6, 5))
    x = rng.integers(0, 2, size=(3, 4, 5))  # (X, Y, C) tokens
    lw = linear_weight_to_lava_conv(wl).astype(np.int32)
    got = utils.conv(x, lw, (1, 1), (1, 1), (0, 0), (1, 1), 1)
    assert np.array_equal(got, x @ wl.T)


# --------------------------------------------------------------------------------------------------
# a. LIFReset == fixedpoint.lif_step, reset at time_step % R == o
# --------------------------------------------------------------------------------------------------

def _lif_reference(a_in, *, du, dv, vth, bias_mant, bias_exp, reset_interval, reset_offset):
    u = np.zeros(a_in.shape[1:], np.int64)
    v = np.zeros_like(u)
    bias = fixedpoint.effective_bias(bias_mant, bias_exp)
    spikes = []
    for row, a in enumerate(a_in):
        time_step = row + 1  # Lava's time_step starts at 1
        if time_step % reset_interval == reset_offset % reset_interval:
            u = np.zeros_like(u)
            v = np.zeros_like(v)
        u, v, s = fixedpoint.lif_step(u, v, a, du=du, dv=dv, bias=bias, vth=vth)
        spikes.append(s)
    return np.stack(spikes)


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_lif_reset_matches_fixedpoint():
    rng = np.random.default_rng(3)
    shape, T = (2, 3, 4), 60
    a_in = rng.integers(-40, 90, size=(T, *shape))
    a_in[rng.random(a_in.shape) < 0.05] = 3000  # beyond int16 >> 6: checks no wrap
    a_in[rng.random(a_in.shape) < 0.03] = -3000
    params = dict(du=410, dv=1300, vth=70, bias_exp=2, reset_interval=7, reset_offset=3)
    bias_mant = rng.integers(-12, 20, size=shape)

    def run():
        from lava.proc.lif.process import LIFReset

        src = _ring(_time_last(a_in))
        lif = LIFReset(shape=shape, bias_mant=bias_mant, **params)
        src.s_out.connect(lif.a_in)
        return record([src, lif], {"s": lif.s_out, "src": src.s_out}, num_steps=T, chunk=25)

    got = run_isolated(run, timeout_s=TIMEOUT_S)
    assert np.array_equal(got["src"], a_in)  # Extractor rows are aligned with time steps
    ref = _lif_reference(a_in, bias_mant=bias_mant, **params)
    assert ref.sum() > 20 and (ref == 0).sum() > 20  # a meaningful mix of spikes
    assert np.array_equal(got["s"], ref)
    # a reset really happens (without it the reference differs)
    no_reset = _lif_reference(a_in, bias_mant=bias_mant, **{**params, "reset_interval": 10**6})
    assert not np.array_equal(no_reset, ref)


# --------------------------------------------------------------------------------------------------
# b. Conv (binary and graded input), depthwise Conv, Dense: equal torch and delay by one step
# --------------------------------------------------------------------------------------------------

CONV_CASES = {
    # name: (out, kh, kw, stride (h, w), padding (h, w), groups)
    "s2p1": (4, 3, 3, (2, 2), (1, 1), 1),
    "rect": (5, 3, 2, (2, 1), (1, 0), 1),
    "depthwise": (3, 3, 3, (2, 2), (1, 1), 3),
}


@pytest.mark.lava
@pytest.mark.timeout(120)
@pytest.mark.parametrize("bits", [0, 8])
def test_conv_matches_torch_and_delays_one_step(bits):
    rng = np.random.default_rng(4 + bits)
    c, h, w_, T = 3, 7, 6, 6
    if bits == 0:
        x = rng.integers(0, 2, size=(T, c, h, w_))
    else:
        x = rng.integers(-128, 256, size=(T, c, h, w_))
    weights = {name: rng.integers(-128, 128, size=(o, c // g, kh, kw))
               for name, (o, kh, kw, _, _, g) in CONV_CASES.items()}

    def run():
        from lava.proc.conv.process import Conv

        src = _ring(_time_last(chw_to_lava(x)))
        procs, probes = [src], {}
        for name, (_, _, _, stride, pad, g) in CONV_CASES.items():
            conv = Conv(weight=torch_conv_weight_to_lava(weights[name]).astype(np.int32),
                        input_shape=(w_, h, c), stride=hw_pair_to_xy(stride),
                        padding=hw_pair_to_xy(pad), groups=g, num_message_bits=bits)
            src.s_out.connect(conv.s_in)
            procs.append(conv)
            probes[name] = conv.a_out
        return record(procs, probes, num_steps=T)

    got = run_isolated(run, timeout_s=TIMEOUT_S)
    for name, (_, _, _, stride, pad, g) in CONV_CASES.items():
        ref = _torch_conv(x, weights[name], stride, pad, g)
        assert np.array_equal(lava_to_chw(got[name]), _delayed(ref, 1)), name


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_conv_ignores_weight_exp_and_wraps_at_24_bits():
    """Lava's fixed_pt Conv model ignores weight_exp and wraps (not saturates) to signed 24 bits."""
    T = 3
    x = np.full((T, 1, 1, 1), 70000)  # graded input

    def run():
        from lava.proc.conv.process import Conv

        src = _ring(_time_last(chw_to_lava(x)))
        conv = Conv(weight=np.full((1, 1, 1, 1), 127, np.int32), input_shape=(1, 1, 1),
                    weight_exp=3, num_message_bits=16)
        src.s_out.connect(conv.s_in)
        return record([src, conv], {"a": conv.a_out}, num_steps=T)

    got = run_isolated(run, timeout_s=TIMEOUT_S)["a"][:, 0, 0, 0]
    raw = 70000 * 127  # 8_890_000 > 2**23 - 1; weight_exp=3 ignored
    wrapped = (raw + 2**23) % 2**24 - 2**23
    assert got.tolist() == [0, wrapped, wrapped]


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_dense_delays_one_step():
    rng = np.random.default_rng(5)
    n_in, n_out, T = 10, 6, 8
    w = fixedpoint.mixed_sign_weight(rng.integers(-64, 64, size=(n_out, n_in)))  # even: exact
    x = rng.integers(0, 2, size=(T, n_in))

    def run():
        from lava.proc.dense.process import Dense

        src = _ring(_time_last(x))
        dense = Dense(weights=w)
        src.s_out.connect(dense.s_in)
        return record([src, dense], {"a": dense.a_out}, num_steps=T)

    got = run_isolated(run, timeout_s=TIMEOUT_S)
    assert np.array_equal(got["a"], _delayed(x @ w.T, 1))


# --------------------------------------------------------------------------------------------------
# c. Several OutPorts into one InPort: their sum
# --------------------------------------------------------------------------------------------------

@pytest.mark.lava
@pytest.mark.timeout(120)
def test_inport_sums_its_sources():
    rng = np.random.default_rng(6)
    c, h, w_, T = 2, 5, 4, 5
    a = rng.integers(0, 2, size=(T, c, h, w_))
    b = rng.integers(0, 2, size=(T, c, h, w_))
    wt = rng.integers(-128, 128, size=(3, c, 3, 3))
    lif_a = rng.integers(-20, 60, size=(T, 4))
    lif_b = rng.integers(-20, 60, size=(T, 4))
    lif_params = dict(du=300, dv=500, vth=40, bias_mant=0, bias_exp=0, reset_interval=1000)

    def run():
        from lava.proc.conv.process import Conv
        from lava.proc.lif.process import LIFReset

        ra, rb = _ring(_time_last(chw_to_lava(a))), _ring(_time_last(chw_to_lava(b)))
        kw = dict(weight=torch_conv_weight_to_lava(wt).astype(np.int32), input_shape=(w_, h, c),
                  stride=1, padding=1)
        graded, binary = Conv(num_message_bits=8, **kw), Conv(num_message_bits=0, **kw)
        for conv in (graded, binary):
            ra.s_out.connect(conv.s_in)
            rb.s_out.connect(conv.s_in)
        out = record([ra, rb, graded, binary], {"graded": graded.a_out, "binary": binary.a_out},
                     num_steps=T)
        # a second, separate network (record runs one connected network at a time)
        la, lb = _ring(_time_last(lif_a)), _ring(_time_last(lif_b))
        lif = LIFReset(shape=(4,), **lif_params)
        la.s_out.connect(lif.a_in)
        lb.s_out.connect(lif.a_in)
        out.update(record([la, lb, lif], {"lif": lif.s_out}, num_steps=T))
        return out

    got = run_isolated(run, timeout_s=TIMEOUT_S)
    assert np.array_equal(lava_to_chw(got["graded"]), _delayed(_torch_conv(a + b, wt, 1, 1), 1))
    # a binary Conv (num_message_bits=0) casts the summed input to bool: it sees a OR b
    assert np.array_equal(lava_to_chw(got["binary"]), _delayed(_torch_conv(a | b, wt, 1, 1), 1))
    assert not np.array_equal(_torch_conv(a | b, wt, 1, 1), _torch_conv(a + b, wt, 1, 1))
    ref = _lif_reference(lif_a + lif_b, bias_exp=0, reset_offset=0,
                         **{k: v for k, v in lif_params.items() if k != "bias_exp"})
    assert ref.sum() > 0
    assert np.array_equal(got["lif"], ref)


# --------------------------------------------------------------------------------------------------
# d. DelaySparse: total delay d + 1, through flatten() / reshape() ports
# --------------------------------------------------------------------------------------------------

@pytest.mark.lava
@pytest.mark.timeout(120)
@pytest.mark.parametrize("d", [0, 3])
def test_delay_sparse_total_delay_is_d_plus_1(d):
    rng = np.random.default_rng(7 + d)
    shape, T = (2, 3, 4), 14
    n = int(np.prod(shape))
    x = rng.integers(0, 2, size=(T, *shape))
    # A "relay" LIF: du = dv = 4095 forget everything, vth = 0: it spikes iff its input is > 0,
    # in the same step (RingBuffer -> LIF.a_in has no delay).
    relay = dict(du=4095, dv=4095, vth=0, bias_mant=0, bias_exp=0)

    def run():
        from lava.proc.conv.process import Conv
        from lava.proc.lif.process import LIF
        from lava.proc.sparse.process import DelaySparse

        src = _ring(_time_last(x))
        lif = LIF(shape=shape, **relay)
        src.s_out.connect(lif.a_in)
        ds = DelaySparse(weights=sp.identity(n, dtype=np.int32, format="csr"), delays=d)
        lif.s_out.flatten().connect(ds.s_in)
        conv = Conv(weight=np.eye(4, dtype=np.int32).reshape(4, 1, 1, 4), input_shape=shape)
        ds.a_out.reshape(shape).connect(conv.s_in)
        return record([src, lif, ds, conv],
                      {"lif": lif.s_out, "ds": ds.a_out, "conv": conv.a_out}, num_steps=T)

    got = run_isolated(run, timeout_s=TIMEOUT_S)
    assert np.array_equal(got["lif"], x)  # relay: no delay
    assert np.array_equal(got["ds"], _delayed(x.reshape(T, n), d + 1))
    assert np.array_equal(got["conv"], _delayed(x, d + 2))


# --------------------------------------------------------------------------------------------------
# e. The custom SSA process
# --------------------------------------------------------------------------------------------------

def test_ssa_rejects_bad_heads():
    from neurocompile.backends.lava.processes.ssa import SpikingSelfAttention

    with pytest.raises(ValueError, match="divisible"):
        SpikingSelfAttention(shape=(2, 2, 6), heads=4)
    with pytest.raises(ValueError, match="24-bit"):
        SpikingSelfAttention(shape=(64, 64, 4096), heads=1)


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_ssa_process_matches_fixedpoint_with_one_step_delay():
    rng = np.random.default_rng(8)
    shape, heads, T = (2, 3, 8), 2, 10
    q, k, v = (rng.integers(0, 2, size=(T, *shape)) for _ in range(3))

    def run():
        from neurocompile.backends.lava.processes.ssa import SpikingSelfAttention

        srcs = [_ring(_time_last(a)) for a in (q, k, v)]
        ssa = SpikingSelfAttention(shape=shape, heads=heads)
        srcs[0].s_out.connect(ssa.q_in)
        srcs[1].s_out.connect(ssa.k_in)
        srcs[2].s_out.connect(ssa.v_in)
        return record([*srcs, ssa], {"a": ssa.a_out}, num_steps=T)

    got = run_isolated(run, timeout_s=TIMEOUT_S)["a"]
    n_tok = shape[0] * shape[1]
    flat = [a.reshape(T, n_tok, shape[2]) for a in (q, k, v)]  # tokens n = x * Y + y (C order)
    ref = fixedpoint.ssa_product(*flat, heads).reshape(T, *shape)
    assert ref.max() > 2
    assert np.array_equal(got, _delayed(ref, 1))
    # per head: channel block h only mixes with itself
    d = shape[2] // heads
    qh, kh, vh = (a[..., :d].reshape(T, n_tok, d) for a in (q, k, v))
    head0 = np.einsum("tnc,tmc,tmd->tnd", qh, kh, vh).reshape(T, *shape[:2], d)
    assert np.array_equal(got[1:, ..., :d], head0[:-1])


# --------------------------------------------------------------------------------------------------
# Timing (printed, not asserted): run with -s to see it
# --------------------------------------------------------------------------------------------------

def _timing_net(n_layers: int, steps: int, shape=(4, 4, 64)):
    """RingBuffer -> (Conv 1x1 -> LIFReset) x n_layers, the last LIF recorded; returns timings."""
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIFReset

    rng = np.random.default_rng(9)
    c = shape[-1]
    src = _ring(rng.integers(0, 2, size=(*shape, 16)))
    procs, prev = [src], src.s_out
    for _ in range(n_layers):
        conv = Conv(weight=rng.integers(-8, 9, size=(c, 1, 1, c)).astype(np.int32),
                    input_shape=shape)
        lif = LIFReset(shape=shape, du=400, dv=400, vth=10, reset_interval=steps + 1)
        prev.connect(conv.s_in)
        conv.a_out.connect(lif.a_in)
        procs += [conv, lif]
        prev = lif.s_out
    timings: dict = {}
    out = record(procs, {"s": prev}, num_steps=steps, timings=timings)
    timings["spikes"] = int(out["s"].sum())
    timings["n_procs"] = len(procs) + 1  # + the Extractor
    return timings


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_print_step_timing():
    # Lava's fixed_pt Conv runs one scipy convolve2d per (out, in) channel pair: with 64 x 64
    # channels that alone is ~30 ms per step, so the ~15-process network uses 8 channels to show
    # the per-process messaging overhead instead.
    steps = 400
    for n_layers, shape in ((1, (4, 4, 64)), (7, (4, 4, 8))):
        t = run_isolated(_timing_net, n_layers, steps, shape, timeout_s=100)
        print(f"\n[lava timing] {t['n_procs']} processes, shape {shape}, {steps} steps: "
              f"build {t['build_s']:.2f} s, run {t['run_s']:.2f} s = "
              f"{1e3 * t['run_s'] / steps:.2f} ms/step (spikes {t['spikes']})")
        assert t["run_s"] > 0
