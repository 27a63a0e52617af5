"""ONNX export of the integer graph: onnxruntime must reproduce ``run_int`` spike for spike."""
import json

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import random_spikformer
from neurocompile import fixedpoint, ir
from neurocompile.backends.onnx import export as onnx_export
from neurocompile.backends.onnx import lif_step_model, spike_output, to_onnx
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from onnx_reference import assert_matches_reference, session


def test_shipped_model_matches_reference(shipped, digits):
    trace = assert_matches_reference(shipped.graph, shipped.steps, digits.test_x[:32])
    assert any(out.any() for out in trace.outputs.values())


def test_random_deeper_model_matches_reference(digits):
    from neurocompile.frontend import convert_spikformer
    from neurocompile.passes import run_pipeline
    from neurocompile.quantize import quantize
    from neurocompile.target import load_target

    float_graph = run_pipeline(convert_spikformer(random_spikformer(3, depth=2, dim=32, heads=2,
                                                                    T=3)))
    graph = quantize(float_graph, load_target("loihi2")).graph
    images = np.random.default_rng(0).integers(0, 17, size=(24, 1, 8, 8))
    assert_matches_reference(graph, int(float_graph.meta["steps"]), images)


def test_imported_conv_net_with_flatten_and_current_decay_matches_reference(digits):
    """An snnTorch network: Flatten (a Reshape) and a CUBA neuron (du < 4095) in ONNX."""
    import snntorch as snn
    import torch
    from torch import nn

    import neurocompile

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), snn.Leaky(beta=0.8, init_hidden=True,
                                                reset_mechanism="zero"),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 16, bias=False),
        snn.Synaptic(alpha=0.5, beta=0.75, init_hidden=True, reset_mechanism="zero",
                     reset_delay=False),
        nn.Linear(16, 10))
    with torch.no_grad():
        net[3].weight.mul_(8)  # random weights: make the CUBA layer fire
    example = torch.from_numpy(digits.test_x[:4] / 16).float().unsqueeze(0).repeat(3, 1, 1, 1, 1)
    compiled = neurocompile.compile(net, example)
    assert any(isinstance(n.op, ir.Flatten) for n in compiled.graph)
    assert any(isinstance(n.op, ir.LoihiLIF) and n.op.du < 4095 for n in compiled.graph)
    trace = assert_matches_reference(compiled.graph, compiled.steps, digits.test_x[:16])
    assert all(out.any() for out in trace.outputs.values() if out.dtype == np.int8)


def test_fixed_batch_and_checker(shipped):
    model = to_onnx(shipped.graph, shipped.steps, batch=5)
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [5, 1, 8, 8]


# --- the LIF step alone, including the wrap of u and the clip of v -------------------------------

HALF, LIMIT = fixedpoint.STATE_HALF, fixedpoint.V_LIMIT


def _ints(low, high, extremes=()):
    return st.one_of(st.sampled_from([low, high, *extremes]), st.integers(low, high))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(du=_ints(0, 4095, (4094, 1)), dv=_ints(0, 4095, (4094, 1)), vth=_ints(0, 1 << 17),
       data=st.data())
def test_lif_step_matches_fixedpoint(du, dv, vth, data):
    n = 16
    arrays = lambda low, high, ex=(): np.array(data.draw(  # noqa: E731
        st.lists(_ints(low, high, ex), min_size=n, max_size=n)), dtype=np.int64)
    u = arrays(-HALF + 1, HALF, (HALF - 1, -HALF + 2, 0))
    v = arrays(-LIMIT, LIMIT, (0, vth << 6, (vth << 6) + 1))
    a_in = arrays(-(1 << 18), 1 << 18, (1 << 17, -(1 << 17), 0))
    bias = arrays(-(1 << 22), 1 << 22, (0,))
    got = session(lif_step_model(du=du, dv=dv, bias=bias, vth=vth)).run(
        ["u", "v", "spikes"], {"u_in": u, "v_in": v, "a_in": a_in})
    want = fixedpoint.lif_step(u, v, a_in, du=du, dv=dv, bias=bias, vth=vth)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_lif_step_wraps_and_clips_at_the_edges():
    """The asymmetric 24-bit wrap (2**23 stays, 2**23 + 64 wraps, -2**23 wraps up) and the clip."""
    a_in = np.array([1 << 17, (1 << 17) + 1, -(1 << 17), -(1 << 17) + 1, 0, 0], dtype=np.int64)
    v = np.array([0, 0, 0, 0, LIMIT, -LIMIT], dtype=np.int64)
    bias = np.array([0, 0, 0, 0, 1 << 22, -(1 << 22)], dtype=np.int64)
    u, v_out, _ = session(lif_step_model(du=4095, dv=0, bias=bias, vth=1 << 17)).run(
        ["u", "v", "spikes"], {"u_in": np.zeros_like(v), "v_in": v, "a_in": a_in})
    np.testing.assert_array_equal(u, [HALF, -HALF + 64, HALF, -HALF + 64, 0, 0])
    assert v_out[4] == LIMIT and v_out[5] == -LIMIT
    want = fixedpoint.lif_step(np.zeros_like(v), v, a_in, du=4095, dv=0, bias=bias, vth=1 << 17)
    np.testing.assert_array_equal(u, want[0])
    np.testing.assert_array_equal(v_out, want[1])


def test_decay_div_truncates_toward_zero():
    """ONNX integer Div is Loihi's decay: sign(p) * (|p| >> 12), also for negative states."""
    u = np.array([-4097, -4096, -4095, -1, 0, 1, 4095, 4097, -(HALF - 1)], dtype=np.int64)
    got = session(lif_step_model(du=2047, dv=0, bias=0, vth=1 << 20)).run(
        ["u"], {"u_in": u, "v_in": np.zeros_like(u), "a_in": np.zeros_like(u)})[0]
    np.testing.assert_array_equal(got, fixedpoint.decay(u, 2048))


# --- errors and the CLI ---------------------------------------------------------------------------

def _float_graph() -> ir.Graph:
    g = ir.Graph()
    g.add("input", ir.Input((1, 4, 4), 1.0, 1))
    g.add("conv", ir.Conv2d(np.ones((2, 1, 1, 1)), np.zeros(2)), ["input"])
    g.add("tokens", ir.Tokens(), ["conv"])
    g.add("head", ir.Readout(np.ones((3, 2)), np.zeros(3)), ["tokens"])
    g.output = "head"
    return g


def test_unsupported_op_names_node_and_type():
    with pytest.raises(NeurocompileError, match=r"^conv: .*no rule for Conv2d"):
        to_onnx(_float_graph(), 2)


def test_inexact_product_is_refused(shipped):
    graph = shipped.graph.copy()
    graph["input"].op.max_value = 1 << 20  # conv partial sums beyond float32's exact integers
    with pytest.raises(NeurocompileError, match=r"sps.stages.0.conv: partial sums .* 2\*\*24"):
        to_onnx(graph, shipped.steps)


def model_graph(bundle_path):
    from neurocompile.bundle import read_bundle

    return read_bundle(bundle_path).graph


@pytest.fixture(scope="module")
def bundle(shipped, tmp_path_factory):
    from neurocompile.bundle import write_bundle

    return write_bundle(shipped, tmp_path_factory.mktemp("onnx") / "sf")


def test_cli_convert(bundle, tmp_path, capsys, digits):
    from neurocompile.cli import main

    out = tmp_path / "sub" / "sf.onnx"
    assert main(["convert", str(bundle), "--to", "onnx", "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["onnx"] == str(out) and data["steps"] == 4 and data["opset"] == 17
    assert "logits" in data["outputs"] and spike_output("blocks.0.attn.attn_lif") in data["outputs"]
    model = onnx.load(out)
    onnx.checker.check_model(model)
    images = digits.test_x[:8]
    logits = session(model).run(["logits"], {"images": images.astype(np.int64)})[0]
    assert np.array_equal(logits.argmax(1), run_int(model_graph(bundle), images, 4).predictions())
    assert main(["convert", str(bundle), "--to", "onnx", "-o", str(tmp_path / "b.onnx")]) == 0
    assert "wrote ONNX" in capsys.readouterr().out


def test_cli_convert_unsupported_op_is_one_line(bundle, tmp_path, capsys, monkeypatch):
    from neurocompile.cli import main

    monkeypatch.delitem(onnx_export.EMITTERS, ir.IntSSA)
    out = tmp_path / "x.onnx"
    assert main(["convert", str(bundle), "--to", "onnx", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "blocks.0.attn.ssa" in err and "IntSSA" in err
    assert not out.exists()


def test_cli_convert_missing_bundle(tmp_path, capsys):
    from neurocompile.cli import main

    assert main(["convert", str(tmp_path / "nope"), "--to", "onnx", "-o",
                 str(tmp_path / "x.onnx")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
