"""Standard NIR export: stock primitives only, read back by nir.read and snnTorch's importer."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from neurocompile import cli, ir
from neurocompile.backends.nir import extension_ops, write_standard_nir
from neurocompile.backends.reference import run_int
from neurocompile.errors import NeurocompileError
from neurocompile.ir.nir_io import KEY

import snntorch as snn  # noqa: E402  (installed by scripts/setup_env.sh)
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "nir_import.py"
STEPS = 4


def _example():
    spec = importlib.util.spec_from_file_location("nir_import_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A trained snnTorch MLP WITH biases, compiled through NIR (an snnTorch-style bundle)."""
    from snntorch.export_nir import export_to_nir

    from neurocompile.frontend.nir_import import compile_nir

    torch.set_num_threads(1)
    example = _example()
    net = example.train(4)
    biased = torch.nn.Sequential(*(
        torch.nn.Linear(m.in_features, m.out_features) if isinstance(m, torch.nn.Linear) else m
        for m in net))
    with torch.no_grad():
        for new, old in zip(biased, net):
            if isinstance(new, torch.nn.Linear):
                new.weight.copy_(old.weight)
                new.bias.uniform_(-0.05, 0.1)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        graph = export_to_nir(biased, torch.zeros(1, 1, 8, 8), ignore_dims=[0])
    return compile_nir(graph, steps=STEPS)


def _no_metadata(node) -> bool:
    if isinstance(node, nir.NIRGraph):
        return KEY not in node.metadata and all(_no_metadata(n) for n in node.nodes.values())
    return not node.metadata


def test_standard_file_is_plain_nir(compiled, tmp_path):
    path = tmp_path / "std.nir"
    summary = write_standard_nir(compiled.graph, path)
    graph = nir.read(str(path))
    assert _no_metadata(graph) or set(graph.metadata) == {"producer", "dt", "semantics"}
    assert all(not n.metadata for n in graph.nodes.values())
    assert summary["nodes"] == {name: type(n).__name__ for name, n in graph.nodes.items()}
    assert sorted(summary["nodes"].values()) == sorted(
        ["Input", "Flatten", "Affine", "LIF", "Affine", "LIF", "Affine", "Output"])
    # weights once: smaller than the stock-readable export that carries the exact ops too
    full = tmp_path / "full.nir"
    assert cli.main(["convert", str(compiled.save(tmp_path / "b")), "--to", "nir",
                     "-o", str(full)]) == 0
    assert path.stat().st_size < full.stat().st_size
    assert KEY in nir.read(str(full)).metadata


def test_snntorch_import_reproduces_the_integer_reference(compiled, tmp_path, digits):
    """snnTorch's import_from_nir simulates the standard file: every spike of every layer and
    every prediction equals the integer reference here (the only possible difference is Loihi's
    truncation of the 12-bit membrane decay, which NIR's float dynamics do not have)."""
    from snntorch.import_nir import import_from_nir

    path = tmp_path / "std.nir"
    write_standard_nir(compiled.graph, path)
    with contextlib.redirect_stdout(io.StringIO()):
        model = import_from_nir(nir.read(str(path)))
    leaky = {name: m for name, m in model.named_modules() if isinstance(m, snn.Leaky)}
    lifs = [n.name for n in compiled.graph if isinstance(n.op, ir.LoihiLIF)]
    assert sorted(leaky) == sorted(lifs)
    recorded: dict[str, list] = {name: [] for name in leaky}
    for name, module in leaky.items():
        module.register_forward_hook(lambda m, i, o, name=name: recorded[name].append(
            (o[0] if isinstance(o, tuple) else o).detach().numpy().copy()))
    images = digits.test_x[:100].reshape(-1, 1, 8, 8)
    outputs = []
    with torch.no_grad():
        for image in images:  # snnTorch's imported Flatten(0) flattens the batch: one at a time
            for module in leaky.values():
                module.reset_mem()
            state = None
            for _ in range(STEPS):
                y, state = model(torch.tensor(image, dtype=torch.float32), state)
                outputs.append(y.numpy())
    reference = run_int(compiled.graph, images, STEPS)
    for name in lifs:
        spikes = np.array(recorded[name]).reshape(reference.outputs[name].shape)
        assert reference.outputs[name].sum() > 0
        assert np.array_equal(spikes, reference.outputs[name]), name
    logits = np.array(outputs).reshape(len(images), STEPS, -1).mean(1)
    assert np.array_equal(logits.argmax(-1), reference.predictions())
    assert np.allclose(logits, reference.logits, atol=1e-5)


def test_import_nir_reads_the_standard_file(compiled, tmp_path):
    from neurocompile.frontend.nir_import import import_nir

    path = tmp_path / "std.nir"
    write_standard_nir(compiled.graph, path)
    graph = import_nir(path, steps=STEPS, input_scale=1.0, input_max=16)
    neurons = [n.op for n in graph if isinstance(n.op, ir.LeakyNeuron)]
    lifs = [n.op for n in compiled.graph if isinstance(n.op, ir.LoihiLIF)]
    assert [round(4096 * (1 - n.leak)) for n in neurons] == [lif.dv for lif in lifs]
    assert [n.threshold for n in neurons] == [float(lif.vth) for lif in lifs]


def test_extension_ops_refuse_standard_but_default_export_works(shipped, tmp_path, capsys):
    assert "IntSSA" in extension_ops(shipped.graph).values()
    with pytest.raises(NeurocompileError, match="IntSSA"):
        write_standard_nir(shipped.graph, tmp_path / "x.nir")
    bundle = shipped.save(tmp_path / "sf")
    capsys.readouterr()
    assert cli.main(["convert", str(bundle), "--to", "nir", "--standard",
                     "-o", str(tmp_path / "sf_std.nir")]) == 2
    err = capsys.readouterr().err
    assert "IntSSA" in err and "without --standard" in err
    assert not (tmp_path / "sf_std.nir").exists()
    assert cli.main(["convert", str(bundle), "--to", "nir", "-o", str(tmp_path / "sf.nir")]) == 0
    assert isinstance(nir.read(str(tmp_path / "sf.nir")), nir.NIRGraph)
