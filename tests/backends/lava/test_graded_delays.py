"""A membrane-shortcut synapse that reads the network input (graded pixel levels) and is needed
later than it comes: Lava rebuilds it fed with the input delayed, and the delay must carry the
levels, not binarise them (found with the Spike-driven Transformer V2's conv stages)."""
import numpy as np
import pytest

from conftest import assert_lava_bit_exact
from neurocompile import ir
from neurocompile.passes import run_pipeline
from neurocompile.quantize import quantize
from neurocompile.target import load_target


def shortcut_from_the_input(seed: int = 0) -> ir.Graph:
    """``u = conv1(x)`` feeds ``lif1`` at once and, with ``conv2(lif1)``, ``lif2`` a step later."""
    rng = np.random.default_rng(seed)
    g = ir.Graph()
    x = g.add("input", ir.Input((1, 8, 8), 1 / 16, 16))
    c1 = g.add("c1", ir.Conv2d(rng.normal(0, 0.8, (4, 1, 3, 3)), rng.normal(0.2, 0.1, 4),
                               padding=1), [x])
    l1 = g.add("l1", ir.LIF(2.0, 0.5), [c1])
    c2 = g.add("c2", ir.Conv2d(rng.normal(0, 0.5, (4, 4, 3, 3)), rng.normal(0.2, 0.1, 4),
                               padding=1), [l1])
    l2 = g.add("l2", ir.LIF(2.0, 0.5), [g.add("sum", ir.CurrentSum(), [c2, c1])])
    g.output = g.add("readout", ir.Readout(rng.normal(0, 1, (3, 4)), np.zeros(3)),
                     [g.add("tokens", ir.Tokens(), [l2])])
    g.meta = {"architecture": "test", "config": {}, "steps": 3}
    g.validate()
    return quantize(run_pipeline(g), load_target("loihi2")).graph


@pytest.mark.lava
@pytest.mark.timeout(300)
def test_delayed_input_keeps_its_levels():
    images = np.random.default_rng(1).integers(0, 17, (2, 1, 8, 8))
    assert_lava_bit_exact(shortcut_from_the_input(), images, 3, active="l2")
