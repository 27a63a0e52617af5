"""The mapper: splits within every per-core limit, connectivity against brute force, multi-chip
spill, and Spikformer-4-384 at CIFAR shape (integer graph, random weights, no simulation)."""
import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocompile import ir
from neurocompile.errors import NeurocompileError
from neurocompile.estimate import map_graph
from neurocompile.estimate.mapping import Feeder
from neurocompile.target import load_target

from test_report import tiny_graph  # noqa: E402 (pytest puts this folder on sys.path)


def lif(channels, shape_len, vth=2):
    bias = np.zeros((channels,) + (1,) * (shape_len - 1), dtype=np.int64)
    return ir.LoihiLIF(du=4095, dv=0, vth=vth, bias_mant=bias, bias_exp=np.zeros_like(bias))


def check_limits(mapping, target):
    """Every core of every population within the target's per-core limits."""
    core = target.core
    for p in mapping.populations:
        if p.unit != "neurocore":
            continue
        assert p.cores == p.channel_chunks * p.position_chunks * p.input_splits, p.name
        assert p.max_neurons_per_core <= target.neurons_per_core, p.name
        assert p.max_synaptic_bytes_per_core <= core.synaptic_memory_bytes, p.name
        assert p.max_axons_per_core <= core.fan_in_axons, p.name
        assert p.max_routes_per_core <= core.fan_out_axons, p.name
        assert p.channel_chunk * p.position_chunk == p.max_neurons_per_core, p.name
    firsts = [p.first_core for p in mapping.populations if p.unit == "neurocore"]
    assert firsts == sorted(firsts)
    assert sum(p.cores for p in mapping.populations if p.unit == "neurocore") == mapping.cores
    assert mapping.chips == -(-mapping.cores // target.cores)


def test_tiny_graph_fits_one_core_per_population():
    target = load_target("loihi2")
    m = map_graph(tiny_graph(), target)
    check_limits(m, target)
    kinds = {p.name: (p.kind, p.unit) for p in m.populations}
    assert kinds["attn.ssa"] == ("attention", "x86")
    assert kinds["residual"] == ("relay", "neurocore")      # the residual sum is a relay
    assert kinds["pool"] == ("pool", "neurocore")
    assert m.cores == 9 and m.chips == 1
    assert all(p.binding == "fits one core" for p in m.populations if p.unit == "neurocore")
    assert m.population("attn.ssa").x86_share == 2.0         # 2 heads, 6 x86 cores on the chip
    assert m.population("mlp.fc_lif").feeders[0].source == "residual"
    assert m.readout_source == "mlp.fc_lif"


def linear_graph(tokens, c_in, c_out):
    g = ir.Graph()
    g.add("input", ir.Input((c_in, tokens, 1), scale=1.0, max_value=1))
    g.add("tokens", ir.Tokens(), ["input"])
    g.add("fc", ir.IntLinear(np.ones((c_out, c_in), dtype=np.int64)), ["tokens"])
    g.add("fc_lif", lif(c_out, 1), ["fc"])
    g.add("head", ir.Readout(np.ones((2, c_out)), np.zeros(2)), ["fc_lif"])
    g.output = "head"
    g.validate()
    return g


def small_target(**core):
    t = load_target("loihi2")
    return replace(t, core=replace(t.core, **core))


@pytest.mark.parametrize("tokens, c_in, c_out, kwargs, binding", [
    (64, 16, 256, {}, "neurons"),                                      # 16k neurons > 4096
    (4, 512, 512, {"synaptic_memory_bytes": 65536}, "memory"),         # 256 KiB of weights
    (64, 1024, 8, {}, "fan-in"),                                       # 64 x 1024 input axons
])
def test_linear_split_by_each_limit(tokens, c_in, c_out, kwargs, binding):
    target = small_target(**kwargs)
    m = map_graph(linear_graph(tokens, c_in, c_out), target)
    check_limits(m, target)
    p = m.population("fc_lif")
    assert p.cores > 1 and binding in p.binding, p.binding
    assert p.neurons == tokens * c_out


def test_fan_out_routes_split_the_producer():
    """A population feeding a finely split consumer needs one route per destination core."""
    target = small_target(fan_out_axons=256)
    g = ir.Graph()
    g.add("input", ir.Input((8, 4, 4), scale=1.0, max_value=1))
    g.add("conv1", ir.IntConv2d(np.ones((8, 8, 1, 1), dtype=np.int64)), ["input"])
    g.add("lif1", lif(8, 3), ["conv1"])
    g.add("conv2", ir.IntConv2d(np.ones((512, 8, 3, 3), dtype=np.int64), padding=1), ["lif1"])
    g.add("lif2", lif(512, 3), ["conv2"])
    g.add("tokens", ir.Tokens(), ["lif2"])
    g.add("head", ir.Readout(np.ones((2, 512)), np.zeros(2)), ["tokens"])
    g.output = "head"
    g.validate()
    m = map_graph(g, target)
    check_limits(m, target)
    assert m.population("lif2").cores > 1
    assert "fan-out" in m.population("lif1").binding


def test_input_split_when_one_neuron_needs_more_axons_than_a_core_has():
    target = small_target(fan_in_axons=256)
    m = map_graph(linear_graph(2, 1000, 4), target)
    check_limits(m, target)
    p = m.population("fc_lif")
    assert p.input_splits == 4 and "input split" in p.binding


def test_spill_to_more_chips_and_max_chips(tmp_path):
    target = replace(load_target("loihi2"), cores=3)           # 3 cores per chip
    g = linear_graph(64, 16, 256)                              # 16k neurons: 4 cores
    m = map_graph(g, target)
    assert m.cores == 4 and m.chips == 2
    x, y, chip = m.core_xy(np.arange(m.cores))
    assert list(chip) == [0, 0, 0, 1] and x[3] == target.mesh.width  # next chip, to the east
    with pytest.raises(NeurocompileError, match="more than the target's max_chips = 1"):
        map_graph(g, replace(target, max_chips=1))


def brute_targets(f: Feeder, q: int):
    """Position chunks every input position reaches, from the convolution's definition."""
    (h, w), (ho, wo) = f.in_grid, f.out_grid
    out = np.zeros((h * w, -(-(ho * wo) // q)), dtype=bool)
    for oy, ox, a, b in itertools.product(range(ho), range(wo), range(f.kernel), range(f.kernel)):
        iy, ix = oy * f.stride - f.padding + a, ox * f.stride - f.padding + b
        if 0 <= iy < h and 0 <= ix < w:
            out[iy * w + ix, (oy * wo + ox) // q] = True
    return out


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 9), w=st.integers(2, 9), k=st.integers(1, 4), stride=st.integers(1, 2),
       padding=st.integers(0, 1), q=st.integers(1, 12))
def test_conv_connectivity_and_footprint_match_brute_force(h, w, k, stride, padding, q):
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    if ho < 1 or wo < 1 or padding * 2 > k:
        return
    f = Feeder("conv", "src", "conv", 3, (h, w), (ho, wo), k, stride, padding, 1)
    q = min(q, ho * wo)
    targets = f.position_targets(q)
    assert np.array_equal(targets, brute_targets(f, q))
    # footprint: an upper bound on the input positions any chunk reads, tight for some chunk
    reads = targets.sum(axis=0)
    assert f.footprint(q) >= reads.max()


def test_grouped_channel_targets():
    f = Feeder("conv", "src", "conv", 8, (4, 4), (4, 4), 3, 1, 1, groups=4)
    t = f.channel_targets(m=3, out_channels=8)                 # out groups {0,1}{2,3}{4,5}{6,7}
    for c in range(8):
        group = c // 2
        expected = {o // 3 for o in range(group * 2, group * 2 + 2)}
        assert set(np.flatnonzero(t[c])) == expected, c


def test_missing_core_table_is_a_clear_error():
    target = replace(load_target("loihi2"), core=None)
    with pytest.raises(NeurocompileError, match=r"\[core\] table"):
        map_graph(tiny_graph(), target)


# -- Spikformer-4-384 at CIFAR shape ---------------------------------------------------------------
@pytest.fixture(scope="module")
def spikformer_4_384():
    import torch

    from neurocompile.frontend import convert_spikformer
    from neurocompile.passes import run_pipeline
    from neurocompile.quantize import quantize
    from neurocompile.zoo.spikformer import Spikformer, SpikformerConfig

    torch.manual_seed(0)
    config = SpikformerConfig(img_size=32, in_channels=3, dim=384, heads=12, depth=4, T=4,
                              sps_stages=4, sps_pools=2, input_scale=1 / 255)
    graph = convert_spikformer(Spikformer(config).eval())
    return quantize(run_pipeline(graph), load_target("loihi2")).graph


def test_spikformer_4_384_maps_to_an_explained_core_and_chip_count(spikformer_4_384):
    target = load_target("loihi2")
    m = map_graph(spikformer_4_384, target)
    check_limits(m, target)
    print("\n" + m.summary())
    # q, k, v, proj (384 -> 384, 64 tokens): a core holds <= 250 output channels of 384 weights
    # (96,000 bytes = 12,000 SynMem entries of 64 bits) and <= 10 tokens (4096 input axons /
    # 384): 2 channel x 7 token chunks = 14 cores
    for block in range(4):
        for part in ("q", "k", "v", "proj"):
            p = m.population(f"blocks.{block}.attn.{part}_lif")
            assert (p.cores, p.channel_chunks, p.position_chunks) == (14, 2, 7)
            assert p.binding == "fan-in + memory"
        fc2 = m.population(f"blocks.{block}.mlp.fc2_lif")  # 1536 inputs: 2 tokens, 55 channels
        assert (fc2.cores, fc2.position_chunk, fc2.channel_chunk) == (224, 2, 55)
        assert m.population(f"blocks.{block}.attn.ssa").unit == "x86"
    # the convolutions take full-height strips (Intel's tiling); the 3x3 x 384 -> 384 kernel
    # needs 384 x 9 x ceil(384 x 8 / 64) entries: 26 channel groups of 15 on the whole 8x8 grid
    rpe = m.population("sps.rpe_lif")
    assert (rpe.allocation, rpe.strip_width, rpe.channel_chunk, rpe.cores) == \
        ("strips", 8, 15, 26)
    assert rpe.binding == "memory"
    stage0 = m.population("sps.stages.0.lif")    # 48 x 32 x 32: strips of 2 columns, 3072 neurons
    assert (stage0.strip_width, stage0.cores, stage0.binding) == (2, 16, "neurons")
    assert m.neurons == 1_744_896
    assert (m.cores, m.chips) == (2466, 20)
    assert m.chips <= target.max_chips
    assert len(m.x86_units) == 4
    binding = m.binding_counts()
    assert set(binding) == {"fan-in + memory", "fan-out", "fan-out + neurons", "fan-in",
                            "neurons", "memory", "memory + neurons"}
    assert sum(binding.values()) == m.cores
