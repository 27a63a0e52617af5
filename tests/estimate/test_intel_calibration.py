"""The Loihi 2 mapper against Intel's compiler: the per-layer core tables printed in lava-dl's
PilotNet benchmark notebooks (tests/estimate/data/intel_pilotnet.json, numbers only). The SDNN
table calibrated ``targets/loihi2.toml [core]``; the SNN table is held out. The networks are
built here from the published layer shapes (random weights of the published magnitudes)."""
import json
from pathlib import Path

import numpy as np
import pytest

from neurocompile import ir
from neurocompile.estimate import map_graph
from neurocompile.target import load_target

DATA = json.loads((Path(__file__).parent / "data" / "intel_pilotnet.json").read_text())


def lif(channels, ndim):
    bias = np.zeros((channels,) + (1,) * (ndim - 1), dtype=np.int64)
    return ir.LoihiLIF(du=4095, dv=0, vth=64, bias_mant=bias, bias_exp=np.zeros_like(bias))


def pilotnet(net: dict, seed: int = 0) -> ir.Graph:
    """The published layer list as an integer graph (an input layer: a 1x1 depthwise synapse
    into neurons, as the netx importer builds a bias-driven input)."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    c, h, w = net["input"]
    g.add("input", ir.Input((c, h, w), scale=1.0, max_value=255))
    prev, shape = "input", (c, h, w)
    for i, layer in enumerate(net["layers"]):
        name = f"layer{i}"
        if layer["kind"] == "input":
            g.add(f"{name}.syn", ir.IntConv2d(np.ones((c, 1, 1, 1), dtype=np.int64), groups=c),
                  [prev])
        elif layer["kind"] == "conv":
            out = layer["out"]
            weight = rng.integers(-8, 9, size=(out[0], shape[0], *layer["kernel"]))
            g.add(f"{name}.syn", ir.IntConv2d(weight, stride=tuple(layer["stride"]),
                                              padding=tuple(layer["padding"])), [prev])
        else:
            if len(shape) == 3:
                g.add("flatten", ir.Flatten(), [prev])
                prev, shape = "flatten", (int(np.prod(shape)),)
            weight = rng.integers(-6, 7, size=(layer["out"][0], shape[0]))
            g.add(f"{name}.syn", ir.IntLinear(weight), [prev])
        g.add(name, lif(layer["out"][0], len(layer["out"])), [f"{name}.syn"])
        prev, shape = name, tuple(layer["out"])
    g.add("head", ir.Readout(np.ones((1, shape[0])), np.zeros(1)), [prev])
    g.output = "head"
    g.validate()
    return g


def intel_cores(net: dict) -> list[int]:
    """Intel's cores per layer in network order (the notebooks print output layer first)."""
    return [row["row"][-1] for row in reversed(net["per_core_table"])]


@pytest.mark.parametrize("name", ["pilotnet_sdnn", "pilotnet_snn"])
def test_cores_per_layer_match_intels_compiler(name):
    net = DATA["networks"][name]
    mapping = map_graph(pilotnet(net), load_target("loihi2"))
    ours = [p.cores for p in mapping.populations if p.unit == "neurocore"]
    theirs = intel_cores(net)
    assert len(ours) == len(theirs)
    for layer, (a, b) in enumerate(zip(ours, theirs)):
        assert abs(a - b) <= 0.15 * b, (name, layer, ours, theirs)
    assert abs(mapping.cores - net["total_cores"]) <= 0.10 * net["total_cores"]
    assert mapping.chips == 1


def test_strip_tiles_and_dense_entries_are_intels():
    """The tiles Intel prints (Conv(4, 32, 24), ...) and the SynMem entries of the dense layer
    whose overflow it logs (66,560 for 100 neurons on one core -> 6 cores -> 12)."""
    net = DATA["networks"]["pilotnet_sdnn"]
    mapping = map_graph(pilotnet(net), load_target("loihi2"))
    table = mapping.core_table()
    convs = [r["tile"] for r in table if r["allocation"] == "strips"]
    assert convs == [[4, 32, 24], [4, 15, 36], [8, 7, 48], [8, 4, 64], [16, 2, 64]]
    dense = table[5]
    assert dense["allocation"] == "dense" and dense["cores"] == 12 and dense["axon_in"] == 2560
    target = load_target("loihi2").core
    one_core = 2560 * (-(-100 * target.dense_synapse_bits // target.synapse_word_bits)
                       + target.dense_row_header_words)
    assert one_core == net["synmem_violations"][0]["allocation"]
    assert all(r["synmem_words"] <= target.synaptic_memory_words for r in table)
    # the conv cores' SynMem entries: C_in x taps x ceil(C_out x 5 bits / 64) (weights |w| <= 8)
    assert table[4]["synmem_words"] == 64 * 9 * 5 == 2880 == net["per_core_table"][4]["row"][3]
