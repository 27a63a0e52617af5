"""One named test per loader bug found (and fixed) by the fuzz suite, plus the no-code guarantees.

Every bad input here must end in a ``NeurocompileError`` whose one-line message names the file.
"""
from __future__ import annotations

import math
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import badinputs as bad
from neurocompile.bundle import read_bundle
from neurocompile.errors import NeurocompileError
from neurocompile.evaluate import load_inputs
from neurocompile.frontend import load_checkpoint
from neurocompile.ir.nir_io import KEY, from_nir, to_nir
from neurocompile.target import load_target


def refused(call, path, match=None) -> str:
    with pytest.raises(NeurocompileError, match=match) as info:
        call()
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    return message


def _save(tmp_path, ckpt, name="c.pt"):
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def _ckpt(**changes):
    ckpt = bad.apply_checkpoint_edits([])
    ckpt.update(changes)
    return ckpt


# -- checkpoints ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [torch.ones(3), True, 1.0, "1"])
def test_format_version_of_the_wrong_type(tmp_path, value):
    # was: RuntimeError "Boolean value of Tensor ... is ambiguous"; True / 1.0 were accepted
    path = _save(tmp_path, _ckpt(format_version=value))
    refused(lambda: load_checkpoint(path), path, "format version")


@pytest.mark.parametrize("value", ["abc", 5, [1, 2]])
def test_training_that_is_not_a_dict(tmp_path, value):
    # was: ValueError / TypeError from dict(...)
    path = _save(tmp_path, _ckpt(training=value))
    refused(lambda: load_checkpoint(path), path, "training must be a dict")


@pytest.mark.parametrize("key, value", [("input_scale", math.nan), ("tau", math.inf),
                                        ("attn_threshold", -math.inf), ("attn_scale", 1e400)])
def test_non_finite_config_values(tmp_path, key, value):
    # was: accepted (NaN passes `value <= 0`), failing later inside the compiler
    ckpt = _ckpt()
    ckpt["config"][key] = value
    path = _save(tmp_path, ckpt)
    refused(lambda: load_checkpoint(path), path, "finite")


@pytest.mark.parametrize("fill", [math.nan, math.inf, -math.inf])
def test_non_finite_weights(tmp_path, fill):
    # was: loaded; the compiler then failed with an internal error
    ckpt = _ckpt()
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key].view(-1)[0] = fill
    path = _save(tmp_path, ckpt)
    refused(lambda: load_checkpoint(path), path, "NaN or Inf")


def test_negative_running_variance_and_complex_weights(tmp_path):
    ckpt = _ckpt()
    var = next(k for k in ckpt["state_dict"] if k.endswith("running_var"))
    ckpt["state_dict"][var] = -ckpt["state_dict"][var].abs() - 1
    path = _save(tmp_path, ckpt)
    refused(lambda: load_checkpoint(path), path, "negative")
    ckpt = _ckpt()
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key] = ckpt["state_dict"][key].to(torch.complex64)
    path = _save(tmp_path, ckpt, "complex.pt")
    refused(lambda: load_checkpoint(path), path, "unsupported tensor type")


@pytest.mark.parametrize("value", ["weights", 3, None, [1.0]])
def test_state_dict_values_that_are_not_tensors(tmp_path, value):
    ckpt = _ckpt()
    ckpt["state_dict"][next(iter(ckpt["state_dict"]))] = value
    path = _save(tmp_path, ckpt)
    refused(lambda: load_checkpoint(path), path, "not a tensor")


def test_wrong_shape_names_the_tensor(tmp_path):
    ckpt = _ckpt()
    key = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][key] = torch.zeros(3)
    path = _save(tmp_path, ckpt)
    message = refused(lambda: load_checkpoint(path), path, "does not match its architecture")
    assert key in message and "(3,)" in message


def test_a_claimed_billion_element_tensor_is_refused_without_materialising_it(tmp_path):
    ckpt = _ckpt()
    key = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][key] = torch.zeros(1).expand(10 ** 9)  # 1-element storage
    path = _save(tmp_path, ckpt)
    refused(lambda: load_checkpoint(path), path, "shape")


@pytest.mark.parametrize("config", [dict(dim=10 ** 9), dict(T=10 ** 9), dict(depth=10 ** 6),
                                    dict(img_size=2 ** 40)])
def test_absurd_sizes_are_refused_by_the_config(tmp_path, config):
    ckpt = _ckpt()
    ckpt["config"].update(config)
    path = _save(tmp_path, ckpt)
    refused(lambda: load_checkpoint(path), path, "above its limit")


def test_a_huge_model_is_refused_before_allocating(tmp_path):
    """Within every per-field limit but 671 M parameters (2.7 GB): refused from shapes alone.

    Before the fix the loader built the model (allocating and initialising every weight) and
    only then compared it with the file.
    """
    ckpt = _ckpt()
    ckpt["config"].update(dim=2048, heads=8, depth=8, mlp_ratio=8)
    path = _save(tmp_path, ckpt)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    start = time.monotonic()
    refused(lambda: load_checkpoint(path), path, "parameters, more than")
    assert time.monotonic() - start < 10
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 500, f"peak memory grew by {grown_mib:.0f} MiB"


def test_damaged_pickle_in_a_valid_zip(tmp_path):
    import zipfile

    path = tmp_path / "z.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"garbage\x00")
        z.writestr("archive/version", "3\n")
    refused(lambda: load_checkpoint(path), path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("foo.txt", b"hi")
    refused(lambda: load_checkpoint(path), path, "not a readable PyTorch checkpoint")


# -- NIR --------------------------------------------------------------------------------------------
def _edited(node, key, value):
    stock = to_nir(bad.tiny_graph())
    meta = stock.metadata[KEY] if node is None else stock.nodes[node].metadata[KEY]
    meta[key] = value
    return stock


@pytest.mark.parametrize("node, key, value, match", [
    (None, "meta", "[" * 100_000 + "]" * 100_000, "RecursionError"),  # was: RecursionError
    (None, "meta", "[1, 2]", "wrong type"),  # was: accepted, graph.meta a list
    (None, "order", "5", "not a list of names"),
    ("input", "params", '{"shape": {"__tuple__": [1, 4, 4]}, "scale": 0.0625, '
                        '"max_value": Infinity}', "max_value must be int"),  # was: OverflowError
    ("input", "params", '{"shape": {"__tuple__": [1, 4, 4]}, "scale": 0.0625, '
                        '"max_value": "16"}', "max_value must be int"),  # was: accepted
    ("input", "params", '{"shape": {"__tuple__": [1, 4, 4]}, "scale": NaN, "max_value": 16}',
     "scale must be float"),
    ("input", "params", '{"shape": {"__tuple__": [1, 100000, 100000]}, "scale": 0.0625, '
                        '"max_value": 16}', "more than"),  # refused before any allocation
])
def test_damaged_nir_metadata(node, key, value, match):
    stock = _edited(node, key, value)
    refused(lambda: from_nir(stock, "damaged.nir"), "damaged.nir", match)


def test_huge_weight_exponent_in_nir():
    graph = bad.tiny_graph()
    conv = next(n.name for n in graph if type(n.op).__name__ == "IntConv2d")
    stock = to_nir(graph)
    payload = stock.nodes[conv].metadata[KEY]
    import json

    params = json.loads(payload["params"])
    params["weight_exp"] = 10 ** 6  # was: OverflowError from 2.0 ** weight_exp
    payload["params"] = json.dumps(params)
    refused(lambda: from_nir(stock, "exp.nir"), "exp.nir", "damaged")


# -- target files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("old, new, match", [
    ("bits = 8 ", "bits = inf ", "must be an integer"),  # was: OverflowError
    ("bits = 8 ", "bits = 8.7 ", "must be an integer"),  # was: silently 8
    ("bits = 8 ", "bits = true ", "must be an integer"),  # was: silently 1
    ("exponent = 0 ", "exponent = 1000000000000 ", "out of range"),
    ("activation_shift = 6 ", "activation_shift = -6 ", "out of range"),
    ("bias_exponent_bits = 3 ", "bias_exponent_bits = 100000000000 ", "out of range"),
    ("delay_bits = 6 ", "delay_bits = -6 ", "out of range"),
    ("mixed_sign_drops_lsb = true", "mixed_sign_drops_lsb = 'no'", "true or false"),
    ('name = "loihi2"', "name = 5", "must be a string"),
    ("joules_per_mac = 4.6e-12", "joules_per_mac = nan", "positive number"),
    ("joules_per_mac = 4.6e-12", "joules_per_mac = -4.6e-12", "positive number"),
    ("state_bits = 24 ", "state_bits = 32 ", "Lava"),
])
def test_bad_target_values(tmp_path, old, new, match):
    text = bad.target_text()
    assert old in text
    path = tmp_path / "t.toml"
    path.write_text(text.replace(old, new))
    refused(lambda: load_target(str(path)), path, match)


def test_oversized_target_file(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(bad.target_text() + "#" * (1 << 20))
    refused(lambda: load_target(str(path)), path, "too large")


# -- .npy inputs ------------------------------------------------------------------------------------
def test_npz_and_object_arrays(tmp_path):
    graph = bad.tiny_graph()
    path = tmp_path / "x.npy"
    with open(path, "wb") as fh:
        np.savez(fh, x=np.zeros((2, 1, 4, 4)))  # was: AttributeError ('NpzFile' has no ndim)
    refused(lambda: load_inputs(path, graph), path, "not a .npy array")
    np.save(path, np.full((2, 1, 4, 4), {"pickled": 1}, dtype=object), allow_pickle=True)
    refused(lambda: load_inputs(path, graph), path, "refused")


@pytest.mark.parametrize("shape", [(10 ** 9, 1, 4, 4), (10 ** 6, 1, 4, 4), (-1, 1, 4, 4)])
def test_npy_header_claiming_more_than_the_file_holds(tmp_path, shape):
    # was: MemoryError (477 GiB) or a 512 MB allocation before failing
    path = tmp_path / "x.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<i8", "fortran_order": False,
                                                  "shape": shape})
        fh.write(b"\0" * 1000)
    refused(lambda: load_inputs(path, bad.tiny_graph()), path)


# -- bundles ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, match", [
    ("steps", "4", "steps must be an integer"), ("steps", 10 ** 9, "steps must be an integer"),
    ("target", 5, "target must be"), ("steps", 3, "disagrees with model.nir"),
])
def test_manifest_values(tmp_path, key, value, match):
    import json

    copy = shutil.copytree(bad.tiny_bundle(), tmp_path / "b")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest[key] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    refused(lambda: read_bundle(copy), copy, match)


# -- no code from untrusted files -------------------------------------------------------------------
class _Payload:
    """Unpickling this would create a file (what a malicious checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "neurocompile.cli", *argv], capture_output=True,
                          text=True, timeout=300, env=env)


def _one_line(result, code=2):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_cli_export_never_unpickles_code_without_the_flag(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    ckpt = _ckpt()
    ckpt["state_dict"]["sneaky"] = _Payload(str(marker))  # a pickled callable inside the dict
    torch.save(ckpt, evil, pickle_protocol=2)
    line = _one_line(_cli("export", str(evil), "-o", str(tmp_path / "out")))
    assert "refused" in line and "--unsafe-pickle" in line and str(evil) in line
    ckpt = _ckpt(training={"hook": print})  # a reference to a builtin callable
    torch.save(ckpt, evil)
    assert "refused" in _one_line(_cli("export", str(evil), "-o", str(tmp_path / "out")))
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_verify_never_unpickles_the_bundles_source(tmp_path, capsys):
    """A bundle whose source.pt holds a payload (hash updated): verify refuses, runs nothing."""
    import hashlib
    import json

    from neurocompile.cli import main

    copy = shutil.copytree(bad.tiny_bundle(), tmp_path / "b")
    marker = tmp_path / "pwned"
    with open(copy / "source.pt", "wb") as fh:
        torch.save({"format_version": 1, "x": _Payload(str(marker))}, fh,
                   pickle_protocol=pickle.HIGHEST_PROTOCOL)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["source.pt"] = hashlib.sha256((copy / "source.pt").read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    images = np.zeros((1, *bad.tiny_graph()["input"].op.shape), np.int64)
    np.save(tmp_path / "x.npy", images)
    assert main(["verify", str(copy), "--input", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "source.pt: refused" in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


def test_only_export_has_the_unsafe_flag():
    from neurocompile.cli import build_parser

    parser = build_parser()
    export = parser.parse_args(["export", "m.pt", "-o", "out"])
    assert export.unsafe_pickle is False
    for command in ("simulate", "verify", "report"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "b", "--unsafe-pickle"])


def test_usage_errors_are_one_line(tmp_path):
    for argv in (["simulate", str(tmp_path), "--samples", "abc"],
                 ["simulate", str(tmp_path), "--timeout", "nan"],
                 ["simulate", str(tmp_path), "--timeout", "-1"], ["simulate"], ["bogus"]):
        line = _one_line(_cli(*argv))
        assert line.startswith("neurocompile: error:")


def test_negative_samples_and_digits_on_a_model_of_another_shape():
    bundle = str(bad.tiny_bundle())
    assert "between 1 and 450" in _one_line(_cli("simulate", bundle, "--samples", "-5"))
    # the tiny model takes 4x4 images: the 8x8 digits split is refused (was: internal error)
    assert "--input" in _one_line(_cli("simulate", bundle, "--samples", "3"))


def test_unwritable_output_is_one_line(tmp_path):
    readme = tmp_path / "file"
    readme.write_text("x")
    line = _one_line(_cli("export", str(bad.tiny_checkpoint_path()), "-o", str(readme / "out")))
    assert "cannot write the bundle" in line  # was: internal error (NotADirectoryError)
    assert os.listdir(tmp_path) == ["file"]
