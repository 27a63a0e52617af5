"""check_limits: every hardware limit is checked before anything runs, and every offending layer
is named (export refuses, simulate / verify refuse a hand-edited bundle before simulating)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest

import badinputs as bad
from neurocompile import ir
from neurocompile.cli import main
from neurocompile.ir.nir_io import write_nir
from neurocompile.quantize.limits import LimitError, LimitViolation, check_limits
from neurocompile.target import load_target

LOIHI2 = load_target("loihi2")


@pytest.fixture()
def graph(shipped):
    return shipped.graph.copy()


def _first(graph, op_type):
    return next(n for n in graph if isinstance(n.op, op_type))


def _quantities(violations):
    return {(v.layer, v.quantity) for v in violations}


def test_quantized_graphs_fit_their_target(shipped):
    assert shipped.limits == [] and check_limits(shipped.graph, LOIHI2) == []
    assert bad.tiny_compiled().limits == []


def test_each_weight_limit(graph):
    convs = [n for n in graph if isinstance(n.op, (ir.IntConv2d, ir.IntLinear))]
    convs[0].op.weight.reshape(-1)[0] = 2 * 200  # even, but the mantissa 200 > 127
    convs[1].op.weight.reshape(-1)[0] = 3  # odd in a mixed-sign layer
    convs[2].op.weight = np.abs(convs[2].op.weight)  # single sign: 8 bits of magnitude
    convs[2].op.weight.reshape(-1)[0] = 300
    convs[3].op.weight_exp = 1  # Lava's Conv has no weight exponent
    violations = check_limits(graph, LOIHI2)
    weights = {(v.layer, v.quantity) for v in violations if v.quantity.startswith("weight")}
    assert weights == {
        (convs[0].name, "weight mantissa"), (convs[1].name, "weight parity"),
        (convs[2].name, "weight magnitude"), (convs[3].name, "weight_exp")}
    # the larger weights also raise the worst-case input current: the overflow check says so
    assert {v.quantity for v in violations} - {q for _, q in weights} <= {"a_in", "u", "v"}
    (mantissa,) = [v for v in violations if v.quantity == "weight mantissa"]
    assert (mantissa.value, mantissa.limit) == (200, 127)
    assert convs[0].name in mantissa.message and "-128..127" in mantissa.message


def test_each_neuron_limit(graph):
    lifs = [n for n in graph if isinstance(n.op, ir.LoihiLIF)]
    lifs[0].op.vth = 1 << 17
    lifs[1].op.bias_mant = np.full_like(lifs[1].op.bias_mant, -5000)
    lifs[2].op.bias_exp = np.full_like(lifs[2].op.bias_exp, 8)
    violations = check_limits(graph, LOIHI2)
    found = _quantities(violations)
    assert found == {(lifs[0].name, "vth"), (lifs[1].name, "bias_mant"),
                     (lifs[2].name, "bias_exp")}
    (vth,) = [v for v in violations if v.quantity == "vth"]
    assert (vth.value, vth.limit) == (1 << 17, (1 << 17) - 1)


def test_overflow_findings_are_limits(graph):
    graph["input"].op.max_value = 10 ** 6  # inputs far beyond what the weights were scaled for
    violations = check_limits(graph, LOIHI2)
    first_lif = _first(graph, ir.LoihiLIF).name
    assert (first_lif, "a_in") in _quantities(violations)
    (a_in,) = [v for v in violations if v.layer == first_lif and v.quantity == "a_in"]
    assert a_in.limit == LOIHI2.max_activation and "CAN OVERFLOW" in a_in.message


def test_a_target_file_with_narrow_bit_widths(tmp_path, shipped):
    """Decay, state and bias widths that Lava's arithmetic does not have: a non-Lava target."""
    text = bad.target_text()
    for old, new in [('backend = "lava"', 'backend = "asic"'), ("state_bits = 24", "state_bits = 12"),
                     ("decay_bits = 12", "decay_bits = 8"), ("threshold_bits = 17",
                                                             "threshold_bits = 8"),
                     ("bias_mantissa_bits = 13", "bias_mantissa_bits = 6"),
                     ("bias_exponent_bits = 3", "bias_exponent_bits = 1")]:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "narrow.toml"
    path.write_text(text)
    narrow = load_target(str(path))
    violations = check_limits(shipped.graph, narrow)
    kinds = {v.quantity for v in violations}
    assert {"vth", "bias_mant", "bias_exp", "du", "ssa message", "u"} <= kinds
    attn = next(n.name for n in shipped.graph if isinstance(n.op, ir.IntSSA))
    ssa = [v for v in violations if v.quantity == "ssa message"]
    assert [v.layer for v in ssa] == [attn] and ssa[0].limit == (1 << 11) - 1
    # one line per layer and quantity: every offending spiking layer is named
    lifs = {n.name for n in shipped.graph if isinstance(n.op, ir.LoihiLIF)}
    assert lifs <= {v.layer for v in violations if v.quantity == "du"}
    assert all(isinstance(v, LimitViolation) and v.layer in v.message for v in violations)


def test_export_refuses_and_names_every_offending_layer(tmp_path, capsys, shipped):
    """A target whose weights keep their LSB and carry exponent 1: no synapse fits."""
    text = bad.target_text().replace("mixed_sign_drops_lsb = true", "mixed_sign_drops_lsb = false")
    text = text.replace("exponent = 0 ", "exponent = 1 ")
    target = tmp_path / "strict.toml"
    target.write_text(text)
    out = tmp_path / "out"
    assert main(["export", "spikformer_digits", "--target", str(target), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert not out.exists()
    lines = err.strip().splitlines()
    assert lines[0].startswith("neurocompile: error: spikformer_digits: not exported: ")
    assert "exceed the limits of target 'loihi2'" in lines[0]
    synapses = [n.name for n in shipped.graph if isinstance(n.op, (ir.IntConv2d, ir.IntLinear))]
    for name in synapses:
        assert any(line.strip().startswith(f"{name}: weight exponent") for line in lines), name
        assert any(line.strip().startswith(f"{name}: weight mantissa") for line in lines), name


def _hand_edited_bundle(tmp_path, shipped, edit):
    """The shipped model's bundle with its graph edited and the hash updated to match."""
    from neurocompile.bundle import write_bundle

    out = write_bundle(shipped, tmp_path / "bundle")
    graph = shipped.graph.copy()
    edit(graph)
    write_nir(graph, out / "model.nir")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["model.nir"] = hashlib.sha256((out / "model.nir").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _break_two_layers(graph):
    lifs = [n for n in graph if isinstance(n.op, ir.LoihiLIF)]
    lifs[0].op.vth = 1 << 20
    conv = _first(graph, ir.IntConv2d)
    conv.op.weight.reshape(-1)[0] = 1


@pytest.mark.parametrize("command", [["simulate"], ["simulate", "--backend", "lava"],
                                     ["verify"]])
def test_simulate_and_verify_refuse_a_hand_edited_bundle(tmp_path, capsys, monkeypatch, shipped,
                                                         command):
    import neurocompile.backends.lava.simulate as lava_sim
    import neurocompile.evaluate as evaluate

    out = _hand_edited_bundle(tmp_path, shipped, _break_two_layers)

    def no_simulation(*args, **kwargs):
        raise AssertionError("a simulation started")

    monkeypatch.setattr(evaluate, "run_reference", no_simulation)
    monkeypatch.setattr(evaluate, "float_predictions", no_simulation)
    monkeypatch.setattr(lava_sim, "run_lava", no_simulation)
    assert main([command[0], str(out), *command[1:], "--samples", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: refused: " in err
    lif0 = next(n.name for n in shipped.graph if isinstance(n.op, ir.LoihiLIF))
    conv0 = _first(shipped.graph, ir.IntConv2d).name
    assert f"  {lif0}: vth 1048576 is outside 0..131071" in err
    assert f"  {conv0}: 1 mixed-sign weight(s) are odd" in err


def test_limit_error_lists_every_violation():
    violations = [LimitViolation(f"layer{i}", "vth", 10 ** 6, 131071, f"layer{i}: vth too big")
                  for i in range(3)]
    err = LimitError("m.pt: not exported", LOIHI2, violations)
    lines = str(err).splitlines()
    assert lines[0] == ("m.pt: not exported: 3 value(s) in 3 layer(s) exceed the limits of "
                        "target 'loihi2':")
    assert lines[1:] == [f"  layer{i}: vth too big" for i in range(3)]
    assert err.violations == violations


def test_an_unknown_bundle_target_is_refused(tmp_path, shipped):
    """simulate cannot check limits against a target it does not have: it refuses."""
    from neurocompile.bundle import write_bundle

    out = write_bundle(shipped, tmp_path / "bundle")
    graph = shipped.graph.copy()
    graph.meta["target"] = "loihi9"
    write_nir(graph, out / "model.nir")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["target"] = "loihi9"
    manifest["files"]["model.nir"] = hashlib.sha256((out / "model.nir").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["simulate", str(out), "--samples", "2"]) == 2
    shutil.rmtree(out)


def test_check_limits_does_not_change_the_graph(shipped):
    graph = shipped.graph.copy()
    before = {n.name: {k: v.copy() for k, v in n.op.arrays().items()} for n in graph}
    check_limits(graph, dataclasses.replace(LOIHI2, weight_bits=2, threshold_bits=2))
    for node in graph:
        for key, value in node.op.arrays().items():
            assert np.array_equal(value, before[node.name][key])


def test_a_model_that_needs_more_chips_than_the_target_has(tmp_path, shipped):
    text = bad.target_text()
    for old, new in [("cores = 128 ", "cores = 2 "), ("max_chips = 1152 ", "max_chips = 1 ")]:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "small.toml"
    path.write_text(text)
    violations = check_limits(shipped.graph, load_target(str(path)))
    assert [(v.layer, v.quantity, v.limit) for v in violations] == [("(model)", "cores", 2)]
    assert "max_chips = 1" in violations[0].message
