"""Non-square kernels, per-axis strides and paddings, grouped and depthwise convolutions in the IR
and the stages that only need the IR: the float and integer interpreters equal torch's conv2d,
the bundle codec writes the pairs and reads them back exactly (and refuses damaged ones), the
synapse algebra composes per axis, and the estimator's fan-out and core geometry follow both
axes."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from neurocompile import ir
from neurocompile.backends.reference import run_float, run_int
from neurocompile.errors import NeurocompileError
from neurocompile.estimate.counts import conv_fanout
from neurocompile.estimate.mapping import Feeder
from neurocompile.frontend.compose import NotComposable, compose_conv, conv_matrix, sum_pool
from neurocompile.ir.nir_io import KEY, from_nir, read_nir, to_nir, write_nir


@st.composite
def conv_shapes(draw):
    """(C, H, W) input and a convolution's weight shape, stride, padding and groups, with a
    non-empty output; depthwise (groups = in = out channels) about a quarter of the time."""
    groups = draw(st.sampled_from([1, 2, 3]))
    depthwise = draw(st.booleans()) and draw(st.booleans())
    per_in, per_out = (1, 1) if depthwise else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    assume(h + 2 * padding[0] >= kh and w + 2 * padding[1] >= kw)
    return (per_in * groups, h, w), (per_out * groups, per_in, kh, kw), stride, padding, groups


def _graph(op, in_shape, max_value: int = 3) -> ir.Graph:
    """input -> op -> flatten -> identity readout (the interpreters need a Readout)."""
    g = ir.Graph()
    g.add("input", ir.Input(in_shape, scale=1.0, max_value=max_value))
    g.add("conv", op, ["input"])
    g.add("flat", ir.Flatten(), ["conv"])
    n = int(np.prod(op.output_shape([in_shape])))
    g.add("head", ir.Readout(np.eye(n), np.zeros(n)), ["flat"])
    g.output = "head"
    g.validate()
    return g


def _torch(x, weight, stride, padding, groups) -> np.ndarray:
    return F.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(
        weight.astype(np.float64)), stride=stride, padding=padding, groups=groups).numpy()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=conv_shapes(), seed=st.integers(0, 2 ** 16))
def test_float_and_integer_conv_equal_torch(shape, seed):
    in_shape, weight_shape, stride, padding, groups = shape
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, (3,) + in_shape)
    weight, bias = rng.normal(size=weight_shape), rng.normal(size=weight_shape[0])
    op = ir.Conv2d(weight, bias, stride, padding, groups)
    want = _torch(x, weight, stride, padding, groups) + bias[:, None, None]
    assert op.stride_hw == stride and op.padding_hw == padding and op.kernel_hw == weight_shape[2:]
    assert op.output_shape([in_shape]) == want.shape[1:]
    graph = _graph(op, in_shape)
    got = run_float(graph, x, 1, record=["conv"]).outputs["conv"][:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    int_weight = rng.integers(-8, 9, weight_shape)
    int_op = ir.IntConv2d(int_weight, stride, padding, groups)
    got = run_int(_graph(int_op, in_shape), x, 1, record=["conv"]).outputs["conv"][:, 0]
    assert np.array_equal(got, _torch(x, int_weight, stride, padding, groups).astype(np.int64))


def test_equal_axes_stay_one_int():
    """Square convolutions keep their historic int fields (bundles stay byte-identical)."""
    w = np.ones((2, 1, 3, 3))
    op = ir.Conv2d(w, np.zeros(2), (2, 2), [1, 1], 2)
    assert (op.stride, op.padding) == (2, 1) and type(op.stride) is int
    op = ir.IntConv2d(w.astype(int), np.array([2, 1]), (0, 1), groups=np.int64(1))
    assert (op.stride, op.padding, op.groups) == ((2, 1), (0, 1), 1)
    assert all(type(v) is int for v in op.stride + op.padding) and type(op.groups) is int
    assert ir.Conv2d(w, np.zeros(2), np.int64(3)).stride == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=0), r"stride 0 must be >= 1 on both axes"),
    (dict(stride=(2, 0)), r"stride \(2, 0\) must be >= 1 on both axes"),
    (dict(padding=(0, -1)), r"padding \(0, -1\) must be >= 0 on both axes"),
    (dict(stride=(1, 2, 3)), r"stride must be an int or an \(h, w\) pair of ints"),
    (dict(padding=1.5), r"padding must be an int or an \(h, w\) pair of ints"),
    (dict(stride=(1.0, 2)), r"stride must be an int or an \(h, w\) pair of ints"),
    (dict(stride=True), r"stride must be an int or an \(h, w\) pair of ints"),
    (dict(padding="same"), r"padding must be an int or an \(h, w\) pair of ints"),
    (dict(groups=0), r"groups 0 must be >= 1"),
    (dict(groups=3), r"4 output channels are not divisible by groups=3"),
])
def test_invalid_pairs_are_refused_by_name(kwargs, message):
    for make in (lambda: ir.Conv2d(np.ones((4, 1, 2, 3)), np.zeros(4), **kwargs),
                 lambda: ir.IntConv2d(np.ones((4, 1, 2, 3), dtype=int), **kwargs)):
        with pytest.raises(ValueError, match=message):
            make()


def _pair_graph(rng) -> ir.Graph:
    g = ir.Graph()
    g.add("input", ir.Input((4, 10, 9), scale=0.5, max_value=3))
    g.add("conv", ir.Conv2d(rng.normal(size=(6, 2, 4, 3)), rng.normal(size=6), (2, 1), (1, 0),
                            2), ["input"])
    g.add("lif", ir.LIF(tau=2.0, v_threshold=0.5), ["conv"])
    g.add("dw", ir.IntConv2d(rng.integers(-8, 8, size=(6, 1, 1, 3)), 1, (0, 2), 6,
                             weight_exp=-1), ["lif"])
    g.add("ilif", ir.LoihiLIF(du=4095, dv=0, vth=5, bias_mant=np.int64(0), bias_exp=0), ["dw"])
    g.add("square", ir.IntConv2d(rng.integers(-8, 8, size=(2, 6, 3, 3)), 2, 1), ["ilif"])
    g.add("ilif2", ir.LoihiLIF(du=4095, dv=0, vth=5, bias_mant=np.int64(0), bias_exp=0),
          ["square"])
    g.add("flat", ir.Flatten(), ["ilif2"])
    g.add("head", ir.Readout(rng.normal(size=(3, 2 * 3 * 5)), np.zeros(3)), ["flat"])
    g.output = "head"
    g.validate()
    return g


def test_bundle_codec_writes_pairs_and_reads_them_back_exactly(tmp_path):
    graph = _pair_graph(np.random.default_rng(0))
    assert graph.shape("conv") == (6, 5, 7) and graph.shape("dw") == (6, 5, 9)
    path = tmp_path / "pairs.nir"
    write_nir(graph, path)
    back = read_nir(path)
    for name in ("conv", "dw", "square"):
        a, b = graph[name].op, back[name].op
        assert type(a) is type(b) and (a.stride, a.padding, a.groups) == (b.stride,
                                                                            b.padding, b.groups)
        assert np.array_equal(a.weight, b.weight)
    assert back["conv"].op.stride == (2, 1) and back["square"].op.stride == 2
    assert [back.shape(n) for n in back.nodes] == [graph.shape(n) for n in graph.nodes]
    write_nir(back, tmp_path / "again.nir")  # read back identically: the same params again
    first = to_nir(graph).nodes["conv"].metadata[KEY]["params"]
    assert first == to_nir(back).nodes["conv"].metadata[KEY]["params"]
    assert json.loads(first)["stride"] == {"__tuple__": [2, 1]}
    # stock NIR: per-axis stride / padding, grouped weights dense; nir 1.0.8 miscomputes the
    # 4x3 kernel's output width, so the file says it is read without nir's type check
    stock = nir.read(str(path), type_check=False)
    conv = stock.nodes["conv"]
    assert list(conv.stride) == [2, 1] and list(conv.padding) == [1, 0]
    assert conv.groups == 1 and conv.weight.shape == (6, 4, 4, 3)
    assert not stock.metadata[KEY]["type_check"]
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(str(path))


def test_a_non_square_kernel_nir_types_right_keeps_the_type_check(tmp_path):
    """A 4x3 kernel whose output width nir happens to compute right ((10 - 4) // 2 + 1 ==
    (10 - 3) // 2 + 1): a fully typed file."""
    g = ir.Graph()
    g.add("input", ir.Input((2, 6, 10), scale=1.0, max_value=1))
    g.add("conv", ir.Conv2d(np.ones((2, 2, 4, 3)), np.zeros(2), (1, 2), (1, 0)), ["input"])
    g.add("flat", ir.Flatten(), ["conv"])
    g.add("head", ir.Readout(np.ones((1, 40)), np.zeros(1)), ["flat"])
    g.output = "head"
    write_nir(g, tmp_path / "typed.nir")
    nir.read(str(tmp_path / "typed.nir"))  # the default, typed reading
    assert read_nir(tmp_path / "typed.nir")["conv"].op.stride == (1, 2)


@pytest.mark.parametrize("value", [[2, 1], (2, 1, 1), (2, "1"), (2, 1.5), (0, 1), (2, -1),
                                   (2, 2 ** 40), "same", None])
def test_a_damaged_pair_is_refused_cleanly(value):
    graph = _pair_graph(np.random.default_rng(1))
    for field in ("stride", "padding"):
        stock = to_nir(graph)
        meta = stock.nodes["conv"].metadata[KEY]
        params = json.loads(meta["params"])
        params[field] = value if not isinstance(value, tuple) else {"__tuple__": list(value)}
        meta["params"] = json.dumps(params)
        with pytest.raises(NeurocompileError, match=r"^damaged.nir: ") as info:
            from_nir(stock, "damaged.nir")  # a bad value, or a valid one the shapes contradict
        assert "\n" not in str(info.value)


def test_a_pair_edited_in_the_stock_node_is_refused():
    stock = to_nir(_pair_graph(np.random.default_rng(2)))
    stock.nodes["conv"].stride = (1, 2)
    with pytest.raises(NeurocompileError, match="its NIR parameters disagree"):
        from_nir(stock, "edited.nir")


@st.composite
def chains(draw):
    """Two convolutions with per-axis kernels / strides / paddings on an (H, W) input."""
    c0, c1, c2 = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    shapes = []
    for cin, cout in ((c0, c1), (c1, c2)):
        shapes.append(((cout, cin, draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                       (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                       (draw(st.integers(0, 1)), draw(st.integers(0, 1)))))
    size = (draw(st.integers(3, 9)), draw(st.integers(3, 9)))
    return c0, size, shapes


@settings(max_examples=80, deadline=None)
@given(chain=chains(), seed=st.integers(0, 2 ** 16), bias=st.booleans())
def test_compose_conv_per_axis_equals_the_two_convolutions(chain, seed, bias):
    c0, size, ((w1, s1, p1), (w2, s2, p2)) = chain
    rng = np.random.default_rng(seed)
    first = ir.Conv2d(rng.normal(size=w1), rng.normal(size=w1[0]) * bias, s1, p1)
    then = ir.Conv2d(rng.normal(size=w2), rng.normal(size=w2[0]), s2, p2)
    mid = first.output_hw(*size)
    assume(min(mid) >= 1 and min(then.output_hw(*mid)) >= 1)
    x = torch.from_numpy(rng.normal(size=(2, c0) + size))
    want = F.conv2d(F.conv2d(x, torch.from_numpy(first.weight), torch.from_numpy(first.bias),
                             s1, p1), torch.from_numpy(then.weight),
                    torch.from_numpy(then.bias), s2, p2).numpy()
    try:
        op = compose_conv(first, then, size)
    except NotComposable:
        assert any(p2) and (bias or any(
            p2[a] and (w1[2 + a] > s1[a] + p1[a] or mid[a] * s1[a] < size[a] + p1[a])
            for a in range(2)))
        return
    got = F.conv2d(x, torch.from_numpy(op.weight), torch.from_numpy(op.bias), op.stride_hw,
                   op.padding_hw).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_sum_pool_and_conv_matrix_per_axis():
    pool = sum_pool(2, (2, 3), (2, 1), 1, 1 / 6)
    assert pool.kernel_hw == (2, 3) and pool.groups == 2 and pool.stride == (2, 1)
    x = np.random.default_rng(0).normal(size=(2, 6, 5))
    want = F.avg_pool2d(torch.from_numpy(x[None]), (2, 3), (2, 1), 1).numpy().reshape(-1)
    np.testing.assert_allclose(conv_matrix(pool, x.shape) @ x.reshape(-1), want, atol=1e-12)


def _brute_fanout(in_shape, weight, stride, padding, groups) -> np.ndarray:
    """Fan-out by definition: for every input element, the taps that read it."""
    c, h, w = in_shape
    out, per_group, kh, kw = weight.shape
    ho, wo = ir.IntConv2d(weight, stride, padding, groups).output_hw(h, w)
    fan = np.zeros(in_shape, dtype=np.int64)
    for o in range(out):
        g = o // (out // groups)
        for i in range(per_group):
            for a in range(kh):
                for b in range(kw):
                    if not weight[o, i, a, b]:
                        continue
                    for y in range(ho):
                        for z in range(wo):
                            iy, iz = y * stride[0] - padding[0] + a, z * stride[1] - padding[1] + b
                            if 0 <= iy < h and 0 <= iz < w:
                                fan[g * per_group + i, iy, iz] += 1
    return fan


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=conv_shapes(), seed=st.integers(0, 2 ** 16))
def test_estimator_fanout_and_core_geometry_follow_both_axes(shape, seed):
    in_shape, weight_shape, stride, padding, groups = shape
    mask = (np.random.default_rng(seed).random(weight_shape) < 0.7).astype(np.int64)
    fan = conv_fanout(in_shape, mask, stride, padding, groups)
    assert np.array_equal(fan, _brute_fanout(in_shape, mask, stride, padding, groups))
    op = ir.IntConv2d(np.ones(weight_shape, dtype=np.int64), stride, padding, groups)
    out_grid = op.output_hw(*in_shape[1:])
    kh, kw = weight_shape[2:]
    feeder = Feeder("conv", "src", "conv", in_shape[0], in_shape[1:], out_grid,
                    kh if kh == kw else (kh, kw), op.stride, op.padding, groups)
    assert feeder.synapses(3) == 3 * weight_shape[1] * kh * kw
    s_out = out_grid[0] * out_grid[1]
    for q in sorted({1, 2, 3, s_out}):
        targets = feeder.position_targets(q)    # which chunks of q outputs each input reaches
        dense = np.zeros((in_shape[1] * in_shape[2], -(-s_out // q)), dtype=bool)
        full = _brute_fanout((1,) + in_shape[1:], np.ones((1, 1, kh, kw), dtype=np.int64),
                             stride, padding, 1)[0]
        for pos in range(s_out):  # brute force: the inputs each output position reads
            y, z = divmod(pos, out_grid[1])
            for a in range(kh):
                for b in range(kw):
                    iy, iz = y * stride[0] - padding[0] + a, z * stride[1] - padding[1] + b
                    if 0 <= iy < in_shape[1] and 0 <= iz < in_shape[2]:
                        dense[iy * in_shape[2] + iz, pos // q] = True
        assert np.array_equal(targets, dense)
        assert np.array_equal(targets.any(axis=1), full.reshape(-1) > 0)
        # the footprint bounds the bounding box (rows x columns) of the inputs one chunk reads
        boxes = []
        for chunk in range(dense.shape[1]):
            rows, cols = np.divmod(np.flatnonzero(dense[:, chunk]), in_shape[2])
            boxes.append((np.ptp(rows) + 1) * (np.ptp(cols) + 1) if rows.size else 0)
        assert feeder.footprint(q) >= max(boxes)  # chunks over several rows: full rows
        if q == 1:
            assert feeder.footprint(q) == max(boxes)
