"""A QKFormer (token stages read back as images: ``ir.Image``) written as a bundle: read back
exactly, and verified bit-exact in Lava by the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import neurocompile
import public_style as ps
from neurocompile.backends.reference import run_float, run_int
from neurocompile.cli import main

T = 4


@pytest.fixture(scope="module")
def compiled(digits):
    model = ps.make_active(ps.QKFormer(), 0)
    example = torch.tensor(digits.test_x[:3] / 16, dtype=torch.float32)
    return neurocompile.compile(model, example)


@pytest.fixture(scope="module")
def bundle_dir(compiled, tmp_path_factory):
    return compiled.save(tmp_path_factory.mktemp("qkformer") / "qk")


def test_bundle_round_trip(compiled, bundle_dir, digits):
    assert any(type(n.op).__name__ == "Image" for n in compiled.graph)
    bundle = neurocompile.read_bundle(bundle_dir)
    images = digits.test_x[:4]
    np.testing.assert_array_equal(bundle.float_predictions(images),
                                  run_float(compiled.float_graph, images, T).predictions())
    np.testing.assert_array_equal(run_int(bundle.graph, images, T).logits,
                                  run_int(compiled.quantized.graph, images, T).logits)


@pytest.mark.lava
@pytest.mark.timeout(900)
def test_verify_in_lava_is_bit_exact(bundle_dir, capsys):
    assert main(["verify", str(bundle_dir), "--samples", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["bit_exact"] is True and data["spike_mismatches"] == 0
    assert data["samples"] == 2 and data["spikes_compared"] > 0


def test_its_nir_file_is_named_as_ours_by_the_nir_importer(bundle_dir):
    """``export model.nir`` reads foreign NIR; our own file (untyped: it holds an Image) is
    recognised and pointed to read_bundle, not refused by nir's type check."""
    from neurocompile.errors import NeurocompileError
    from neurocompile.frontend.nir_import import import_nir

    with pytest.raises(NeurocompileError, match="written by neurocompile"):
        import_nir(bundle_dir / "model.nir", steps=T)
