"""Generators of bad inputs for every entry point, and the one rule they are checked against.

Shared by ``tests/robustness/test_fuzz_loaders.py`` (a fixed, derandomized budget in the normal
test run) and ``bench/fuzz_loaders.py`` (a longer random run).

The rule: on any input a loader either loads it (the input happened to be valid) or raises
``NeurocompileError`` with a one-line message that names the file. Anything else -- KeyError,
RuntimeError from torch, OSError from h5py, MemoryError, a hang -- is a bug in the loader.

Each fuzz target is a :class:`Target` with a hypothesis strategy producing a bad input and a
``check(workdir, example)`` that feeds it to the loader and asserts the rule. ``TRIED`` counts the
examples checked per target.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import functools
import io
import json
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from hypothesis import strategies as st

from neurocompile.errors import NeurocompileError

#: examples checked so far, per target name
TRIED: collections.Counter = collections.Counter()


# -- the rule ---------------------------------------------------------------------------------------
class LoaderBug(AssertionError):
    """A loader broke the rule (raised something else, or an unclear message)."""


def expect_clean(call: Callable, names: str) -> str:
    """Run ``call()``: 'loaded' or 'refused' (NeurocompileError naming ``names``, one line)."""
    try:
        call()
    except NeurocompileError as exc:
        message = str(exc)
        if names not in message:
            raise LoaderBug(f"the error does not name {names!r}: {message!r}") from exc
        if "\n" in message:
            raise LoaderBug(f"the error is not one line: {message!r}") from exc
        return "refused"
    except Exception as exc:  # noqa: BLE001 - exactly what this rule is about
        raise LoaderBug(f"{type(exc).__name__} escaped the loader: {exc}") from exc
    return "loaded"


# -- small valid inputs to damage (built once per process) -----------------------------------------
TINY_CONFIG = dict(img_size=4, sps_stages=1, sps_pools=1, dim=4, heads=2, mlp_ratio=1, T=2)


def _tests_dir() -> None:
    tests = str(Path(__file__).resolve().parents[1])
    if tests not in sys.path:
        sys.path.insert(0, tests)


@functools.lru_cache(maxsize=None)
def _cache_dir() -> Path:
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="neurocompile-fuzz-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.lru_cache(maxsize=None)
def tiny_checkpoint() -> dict:
    _tests_dir()
    from conftest import random_spikformer

    from neurocompile.zoo.registry import make_checkpoint

    return make_checkpoint(random_spikformer(0, **TINY_CONFIG), "spikformer", {"seed": 0})


@functools.lru_cache(maxsize=None)
def tiny_checkpoint_path() -> Path:
    path = _cache_dir() / "tiny.pt"
    torch.save(tiny_checkpoint(), path)
    return path


@functools.lru_cache(maxsize=None)
def tiny_compiled():
    from neurocompile.compiler import compile_checkpoint

    return compile_checkpoint(tiny_checkpoint_path(), "loihi2")


def tiny_graph():
    return tiny_compiled().graph


@functools.lru_cache(maxsize=None)
def tiny_nir_bytes() -> bytes:
    from neurocompile.ir.nir_io import write_nir

    path = _cache_dir() / "tiny.nir"
    write_nir(tiny_graph(), path)
    return path.read_bytes()


@functools.lru_cache(maxsize=None)
def tiny_bundle() -> Path:
    from neurocompile.bundle import write_bundle

    return write_bundle(tiny_compiled(), _cache_dir() / "bundle")


@functools.lru_cache(maxsize=None)
def target_text() -> str:
    from importlib import resources

    return (resources.files("neurocompile.targets") / "loihi2.toml").read_text()


# -- generic damage ---------------------------------------------------------------------------------
def _flip(data: bytes, flips) -> bytes:
    out = bytearray(data)
    for pos, bit in flips:
        out[pos % len(out)] ^= 1 << bit
    return bytes(out)


def _overwrite(data: bytes, pos: int, junk: bytes) -> bytes:
    return data[:pos] + junk + data[pos + len(junk):]


def corrupted(data: bytes) -> st.SearchStrategy[bytes]:
    """Truncated, bit-flipped, overwritten or random versions of ``data``."""
    n = len(data)
    return st.one_of(
        st.integers(0, n - 1).map(lambda k: data[:k]),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 7)), min_size=1, max_size=32)
        .map(functools.partial(_flip, data)),
        st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=256))
        .map(lambda a: _overwrite(data, *a)),
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda b: data[:8] + b),  # right magic, garbage after
    )


HUGE_INTS = st.sampled_from([0, -1, -(2 ** 63), 2 ** 31, 2 ** 63, 10 ** 9, 10 ** 12, 10 ** 30])
WEIRD_FLOATS = st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 5e-324])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | HUGE_INTS | st.floats() | WEIRD_FLOATS
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@st.composite
def small_tensors(draw) -> torch.Tensor:
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64,
                                  torch.int8, torch.uint8, torch.bool, torch.complex64]))
    fill = draw(st.sampled_from([0.0, 1.0, -3.0, float("nan"), float("inf")]))
    if dtype == torch.bool or not (dtype.is_floating_point or dtype.is_complex):
        fill = 1
    return torch.full(shape, fill, dtype=dtype)


WEIRD_VALUES = JSON_VALUES | st.binary(max_size=16) | small_tensors() | st.tuples(st.integers())


# -- checkpoints: damaged files ---------------------------------------------------------------------
def checkpoint_file_bytes() -> st.SearchStrategy[bytes]:
    return corrupted(tiny_checkpoint_path().read_bytes())


def check_checkpoint_bytes(workdir: Path, data: bytes) -> str:
    from neurocompile.frontend import load_checkpoint

    path = workdir / "fuzz.pt"
    path.write_bytes(data)
    TRIED["checkpoint bytes"] += 1
    return expect_clean(lambda: load_checkpoint(path), str(path))


# -- checkpoints: zip archives with wrong contents ------------------------------------------------
def _members() -> dict[str, bytes]:
    with zipfile.ZipFile(tiny_checkpoint_path()) as z:
        return {name: z.read(name) for name in z.namelist()}


MEMBER_NAMES = st.sampled_from(["tiny/data.pkl", "tiny/version", "tiny/.format_version",
                                "tiny/byteorder", "tiny/data/0", "tiny/data/99", "data.pkl",
                                "archive/data.pkl", "a/b/c/data.pkl", "tiny/../data.pkl"])
PICKLES = (JSON_VALUES | st.dictionaries(
    st.sampled_from(["format_version", "architecture", "config", "state_dict", "training"]),
    JSON_VALUES, max_size=5)).map(lambda obj: pickle.dumps(obj, protocol=2))


@st.composite
def zip_archives(draw) -> bytes:
    members = _members()
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["drop", "replace", "add", "rename", "empty"]))
        names = sorted(members)
        if action == "drop" and names:
            del members[draw(st.sampled_from(names))]
        elif action == "replace" and names:
            members[draw(st.sampled_from(names))] = draw(st.binary(max_size=300) | PICKLES)
        elif action == "add":
            members[draw(MEMBER_NAMES)] = draw(st.binary(max_size=300) | PICKLES)
        elif action == "rename":
            prefix = draw(st.sampled_from(["", "other/", "a/b/", "tiny2/"]))
            members = {prefix + n.split("/", 1)[-1]: v for n, v in members.items()}
        else:
            members = {}
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, content in members.items():
            z.writestr(name, content)
    return buffer.getvalue()


def check_zip_archive(workdir: Path, data: bytes) -> str:
    from neurocompile.frontend import load_checkpoint

    path = workdir / "fuzz_zip.pt"
    path.write_bytes(data)
    TRIED["zip archives"] += 1
    return expect_clean(lambda: load_checkpoint(path), str(path))


# -- checkpoints: well-formed files holding wrong values ------------------------------------------
CONFIG_INTS = ["img_size", "in_channels", "num_classes", "dim", "heads", "depth", "mlp_ratio", "T",
               "sps_stages", "sps_pools"]


@st.composite
def checkpoint_edits(draw) -> list[tuple]:
    """A list of edits to apply to the tiny checkpoint dict (printable, so failures read well)."""
    base = tiny_checkpoint()
    float_keys = [k for k, v in base["state_dict"].items() if v.is_floating_point()]
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["top", "delete_top", "config", "config_huge", "nonfinite",
                                     "shape", "dtype", "value", "delete_tensor", "add_tensor",
                                     "expanded"]))
        if kind == "top":
            edits.append((kind, draw(st.sampled_from(["format_version", "architecture", "config",
                                                      "state_dict", "training"])),
                          draw(WEIRD_VALUES)))
        elif kind == "delete_top":
            edits.append((kind, draw(st.sampled_from(list(base))), None))
        elif kind == "config":
            edits.append((kind, draw(st.sampled_from(sorted(base["config"]) + ["bogus"])),
                          draw(WEIRD_VALUES)))
        elif kind == "config_huge":
            edits.append((kind, draw(st.sampled_from(CONFIG_INTS)),
                          draw(HUGE_INTS | st.sampled_from([8192, 1024, 4096, 100_000]))))
        elif kind == "nonfinite":
            edits.append((kind, draw(st.sampled_from(float_keys)),
                          draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))))
        elif kind == "shape":
            edits.append((kind, draw(st.sampled_from(float_keys)),
                          tuple(draw(st.lists(st.integers(0, 6), max_size=4)))))
        elif kind == "dtype":
            edits.append((kind, draw(st.sampled_from(sorted(base["state_dict"]))),
                          draw(st.sampled_from(["int8", "int64", "bool", "float16", "float64",
                                                "complex64", "uint8"]))))
        elif kind in ("value", "add_tensor"):
            edits.append((kind, draw(st.sampled_from(sorted(base["state_dict"]) + ["bogus.w"])),
                          draw(WEIRD_VALUES)))
        elif kind == "delete_tensor":
            edits.append((kind, draw(st.sampled_from(sorted(base["state_dict"]))), None))
        else:  # a tensor claiming 10**9 elements over a 1-element storage
            edits.append((kind, draw(st.sampled_from(float_keys)),
                          draw(st.sampled_from([10 ** 9, 2 ** 40]))))
    return edits


def apply_checkpoint_edits(edits) -> object:
    ckpt = copy.deepcopy(tiny_checkpoint())
    # expanded (10**9-element, 1-element storage) tensors last: no other edit may materialise one
    for kind, key, value in sorted(edits, key=lambda edit: edit[0] == "expanded"):
        state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
        state = state if isinstance(state, dict) else {}
        config = ckpt.get("config") if isinstance(ckpt, dict) else None
        config = config if isinstance(config, dict) else {}
        if kind == "top":
            ckpt[key] = value
        elif kind == "delete_top":
            ckpt.pop(key, None)
        elif kind in ("config", "config_huge"):
            config[key] = value
        elif kind not in ("value", "add_tensor") and not isinstance(state.get(key), torch.Tensor):
            continue  # an earlier edit removed or replaced that tensor
        elif kind == "nonfinite":
            t = state[key].clone()
            if t.numel():
                t.view(-1)[t.numel() // 2] = value
            state[key] = t
        elif kind == "shape":
            state[key] = torch.zeros(value)
        elif kind == "dtype":
            state[key] = state[key].to(getattr(torch, value))
        elif kind in ("value", "add_tensor"):
            state[key] = value
        elif kind == "delete_tensor":
            del state[key]
        else:
            state[key] = torch.zeros(1).expand(value)
    return ckpt


def check_checkpoint_edits(workdir: Path, edits) -> str:
    from neurocompile.frontend import load_checkpoint

    path = workdir / "fuzz_dict.pt"
    torch.save(apply_checkpoint_edits(edits), path)
    TRIED["checkpoint dicts"] += 1
    return expect_clean(lambda: load_checkpoint(path), str(path))


# -- NIR files --------------------------------------------------------------------------------------
def nir_file_bytes() -> st.SearchStrategy[bytes]:
    return corrupted(tiny_nir_bytes())


def check_nir_bytes(workdir: Path, data: bytes) -> str:
    from neurocompile.ir.nir_io import read_nir

    path = workdir / "fuzz.nir"
    path.write_bytes(data)
    TRIED["nir bytes"] += 1
    return expect_clean(lambda: read_nir(path), str(path))


@st.composite
def nir_metadata_edits(draw) -> list[tuple]:
    """Edits of a NIR graph's neurocompile metadata: (node or None, key, action, value)."""
    graph = tiny_graph()
    nodes = list(graph.nodes)
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        node = draw(st.none() | st.sampled_from(nodes))
        keys = (["format", "format_version", "order", "output", "meta", "layout"] if node is None
                else ["op", "inputs", "params", "arrays", "shapes", "meta"])
        key = draw(st.sampled_from(keys + ["bogus"]))
        action = draw(st.sampled_from(["delete", "raw", "json", "param", "array", "deep"]))
        if action == "raw":
            value = draw(WEIRD_VALUES.filter(lambda v: not isinstance(v, torch.Tensor)))
        elif action == "json":
            value = draw(JSON_VALUES)
        elif action == "param":
            value = (draw(st.text(max_size=10) | st.sampled_from(
                ["shape", "scale", "max_value", "kernel", "stride", "padding", "groups", "heads",
                 "shift", "du", "dv", "vth", "weight_exp"])), draw(JSON_VALUES))
        elif action == "array":
            value = (draw(st.sampled_from(["weight", "bias_mant", "bias_exp", "bias", "x"])),
                     draw(st.sampled_from(["nan", "huge", "str", "empty", "3d", "float"])))
        else:
            value = draw(st.integers(100, 100_000))
        edits.append((node, key, action, value))
    return edits


def _array_edit(kind: str) -> np.ndarray:
    return {"nan": np.full(4, np.nan), "huge": np.full(4, 2.0 ** 80), "str": np.array(["a", "b"]),
            "empty": np.zeros(0), "3d": np.ones((2, 2, 2), np.int64),
            "float": np.full(4, 0.5)}[kind]


def apply_nir_edits(edits):
    from neurocompile.ir.nir_io import KEY, to_nir

    stock = to_nir(tiny_graph())
    for node, key, action, value in edits:
        meta = stock.metadata[KEY] if node is None else stock.nodes[node].metadata[KEY]
        if action == "delete":
            meta.pop(key, None)
        elif action == "raw":
            meta[key] = value
        elif action == "json":
            meta[key] = json.dumps(value)
        elif action == "param" and node is not None:
            try:
                params = json.loads(meta.get("params", "{}"))
            except (TypeError, ValueError):
                params = {}
            if isinstance(params, dict):
                params[value[0]] = value[1]
            meta["params"] = json.dumps(params)
        elif action == "array" and node is not None and isinstance(meta.get("arrays"), dict):
            meta["arrays"][value[0]] = _array_edit(value[1])
        elif action == "deep":
            meta[key] = "[" * value + "]" * value
    return stock


def check_nir_metadata(workdir: Path, edits) -> str:
    from neurocompile.ir.nir_io import from_nir

    stock = apply_nir_edits(edits)
    TRIED["nir metadata"] += 1
    return expect_clean(lambda: from_nir(stock, "fuzzed.nir"), "fuzzed.nir")


# -- target files -----------------------------------------------------------------------------------
TOML_LITERALS = st.one_of(
    st.integers().map(str), HUGE_INTS.map(str),
    st.sampled_from(["nan", "inf", "-inf", "+nan", "1e308", "-1e308", "0.0", "-0.5", "true",
                     "false", "[1, 2]", "[]", "{a = 1}", "{}", "1979-05-27", "07:32:00",
                     '"eight"', "''", "0x10", "0b11", "1_000"]),
    st.floats().map(lambda f: repr(f).replace("nan", "nan").replace("inf", "inf")),
    st.text(max_size=15).map(json.dumps),  # a quoted (basic) string
    st.text(max_size=15),  # usually not TOML at all
)


@st.composite
def target_texts(draw) -> str:
    lines = target_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["value", "value", "delete", "insert", "duplicate",
                                       "truncate"]))
        i = draw(st.integers(0, len(lines) - 1))
        assignment = re.match(r"\s*([\w.]+)\s*=", lines[i])
        if action == "value" and assignment:
            lines[i] = f"{assignment.group(1)} = {draw(TOML_LITERALS)}"
        elif action == "delete":
            del lines[i]
        elif action == "insert":
            lines.insert(i, draw(st.text(max_size=30) | TOML_LITERALS.map(lambda v: f"x = {v}")))
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "truncate":
            lines = lines[:i]
        if not lines:
            break
    return "\n".join(lines) + "\n"


def check_target_text(workdir: Path, text: str) -> str:
    from neurocompile.target import load_target

    path = workdir / "fuzz.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates: invalid UTF-8
    TRIED["target files"] += 1
    return expect_clean(lambda: load_target(str(path)), str(path))


# -- .npy inputs ------------------------------------------------------------------------------------
NPY_DTYPES = ["int8", "uint8", "int16", "int32", "int64", "uint64", "float16", "float32",
              "float64", "longdouble", "bool", "complex64", "object", "<U3", "S2", "M8[s]",
              "m8[s]", "i4,f4", ">i8", ">f8"]
NPY_FILLS = [0, 3, 16, 17, -1, 2.5, 1e300, float("nan"), float("inf"), float("-inf"), 2 ** 63]


def _npy_header(header: str, version: int = 1) -> bytes:
    raw = header.encode("latin1", "replace")
    size_bytes = 2 if version == 1 else 4
    pad = (-(8 + size_bytes + len(raw) + 1)) % 64
    raw = raw + b" " * pad + b"\n"
    return (b"\x93NUMPY" + bytes([version, 0])
            + len(raw).to_bytes(size_bytes, "little") + raw)


@st.composite
def npy_files(draw) -> bytes:
    shape_in = tiny_graph()["input"].op.shape
    kind = draw(st.sampled_from(["array", "array", "header", "damaged", "npz"]))
    if kind == "header":
        descr = draw(st.sampled_from(["'<i8'", "'<f8'", "'|O'", "'|b1'", "'garbage'", "[]",
                                      "[('a', '<i4')]", "'<U2'", "None", "'V8'"]))
        shape = draw(st.sampled_from([(2, *shape_in), (10 ** 9, *shape_in), (-1, *shape_in),
                                      (2 ** 62, *shape_in), (), (0, *shape_in), (2.5,),
                                      "'x'"]))
        version = draw(st.sampled_from([1, 2, 3]))
        text = draw(st.sampled_from([
            f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}",
            f"{{'descr': {descr}, 'fortran_order': True, 'shape': {shape}, }}",
            f"{{'descr': {descr}, 'shape': {shape}}}",
            "not a dict", "{'descr': " + "(" * 500 + ")" * 500 + "}",
        ]))
        return _npy_header(text, version) + draw(st.binary(max_size=600))
    if kind == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, x=np.zeros((2, *shape_in)))
        return buffer.getvalue()
    shape = draw(st.sampled_from([(2, *shape_in), (1, *shape_in), (0, *shape_in), shape_in, (),
                                  (2, 3, 4, 4), (2, *shape_in, 1), (5,)]))
    dtype = np.dtype(draw(st.sampled_from(NPY_DTYPES)))
    fill = draw(st.sampled_from(NPY_FILLS))
    array = np.zeros(shape, dtype)
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        with np.errstate(all="ignore"):
            array = np.full(shape, fill, dtype=dtype) if dtype.kind != "O" else \
                np.full(shape, {"pixel": fill}, dtype=object)
    if array.size and dtype.kind in "iuf" and draw(st.booleans()):  # one odd pixel
        with np.errstate(all="ignore"), contextlib.suppress(OverflowError, ValueError):
            array.reshape(-1)[0] = draw(st.sampled_from(NPY_FILLS))
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    data = buffer.getvalue()
    return data if kind == "array" else draw(corrupted(data))


def check_npy(workdir: Path, data: bytes) -> str:
    from neurocompile.evaluate import load_inputs

    path = workdir / "fuzz.npy"
    path.write_bytes(data)
    TRIED["npy inputs"] += 1
    return expect_clean(lambda: load_inputs(path, tiny_graph()), str(path))


# -- bundle manifests -------------------------------------------------------------------------------
@st.composite
def manifest_edits(draw) -> tuple:
    if draw(st.integers(0, 4)) == 0:
        return ("bytes", draw(corrupted((tiny_bundle() / "manifest.json").read_bytes())))
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(["format", "format_version", "files", "steps", "target",
                                    "architecture", "config", "files.model.nir",
                                    "files.source.pt", "files.extra"]))
        edits.append((key, draw(st.just("<delete>") | JSON_VALUES)))
    return ("json", edits)


def apply_manifest_edits(example) -> bytes:
    original = (tiny_bundle() / "manifest.json").read_bytes()
    kind, edits = example
    if kind == "bytes":
        return edits
    manifest = json.loads(original)
    for key, value in edits:
        holder, name = manifest, key
        if key.startswith("files."):
            holder, name = manifest.get("files"), key[len("files."):]
            if not isinstance(holder, dict):
                continue
        if value == "<delete>":
            holder.pop(name, None)
        else:
            holder[name] = value
    return json.dumps(manifest).encode()


def check_manifest(workdir: Path, example) -> str:
    from neurocompile.bundle import read_bundle

    bundle = tiny_bundle()
    manifest = bundle / "manifest.json"
    original = manifest.read_bytes()
    manifest.write_bytes(apply_manifest_edits(example))
    TRIED["bundle manifests"] += 1
    try:
        return expect_clean(lambda: read_bundle(bundle), str(bundle))
    finally:
        manifest.write_bytes(original)


# -- command-line arguments -------------------------------------------------------------------------
@st.composite
def cli_argvs(draw) -> list[str]:
    """argv lists that are wrong in at least one place (so nothing long ever runs)."""
    command = draw(st.sampled_from(["simulate", "verify", "export"]))
    bad = draw(st.sampled_from(["samples", "timeout", "input", "bundle", "option", "target",
                                "model"]))
    if command == "export":
        model = "<tiny>" if bad != "model" else draw(st.sampled_from(
            ["no/such.pt", "<bundle>", "<readme>", ""]))
        target = "loihi2" if bad != "target" else draw(st.sampled_from(
            ["loihi7", "no/such.toml", "<readme>", ""]))
        argv = ["export", model, "--target", target, "-o",
                draw(st.sampled_from(["<out>", "<readme>/x"])) if bad in ("model", "target")
                else "<readme>/x"]
        if bad == "option":
            argv.append(draw(st.sampled_from(["--bogus", "--json=1", "-x"])))
        return argv
    argv = [command, "<bundle>" if bad != "bundle" else draw(st.sampled_from(
        ["no/such/bundle", "<readme>", "<emptydir>", ""]))]
    if bad == "samples" or draw(st.booleans()):
        argv += ["--samples", draw(
            st.integers(-10 ** 12, 0).map(str) | st.integers(451, 10 ** 12).map(str)
            | st.sampled_from(["abc", "1.5", "", "0x10", "nan", "1e3"]))]
    if bad == "timeout":
        argv += ["--timeout", draw(st.floats(max_value=0).map(str) | st.sampled_from(
            ["nan", "inf", "-inf", "abc", "", "0"]))]
    if bad == "input":
        argv += ["--input", draw(st.sampled_from(["no/such.npy", "<readme>", "<emptydir>",
                                                 "<nan.npy>"]))]
    if bad == "option":
        argv.append(draw(st.sampled_from(["--bogus", "--backend=gpu", "--samples"])))
    return argv


def _cli_files(workdir: Path) -> dict[str, str]:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    empty = workdir / "empty_dir"
    empty.mkdir(exist_ok=True)
    nan = workdir / "nan.npy"
    if not nan.exists():
        np.save(nan, np.full((2, *tiny_graph()["input"].op.shape), np.nan))
    return {"<tiny>": str(tiny_checkpoint_path()), "<bundle>": str(tiny_bundle()),
            "<readme>": str(readme), "<emptydir>": str(empty), "<nan.npy>": str(nan),
            "<out>": str(workdir / "out")}


def check_cli(workdir: Path, argv: list[str]) -> str:
    from neurocompile.cli import main

    files = _cli_files(workdir)
    argv = [functools.reduce(lambda a, kv: a.replace(*kv), files.items(), arg) for arg in argv]
    err = io.StringIO()
    TRIED["cli arguments"] += 1
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code in (0, None) or code == 1:
        raise LoaderBug(f"neurocompile {' '.join(argv)} exited {code}: {err.getvalue()!r}")
    if len(lines) != 1 or "Traceback" in lines[0] or "internal error" in lines[0]:
        raise LoaderBug(f"neurocompile {' '.join(argv)}: not one clear line: {err.getvalue()!r}")
    return "refused"


# -- the registry -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str
    strategy: Callable[[], st.SearchStrategy]
    check: Callable[[Path, object], str]


TARGETS = [
    Target("checkpoint bytes", checkpoint_file_bytes, check_checkpoint_bytes),
    Target("zip archives", zip_archives, check_zip_archive),
    Target("checkpoint dicts", checkpoint_edits, check_checkpoint_edits),
    Target("nir bytes", nir_file_bytes, check_nir_bytes),
    Target("nir metadata", nir_metadata_edits, check_nir_metadata),
    Target("target files", target_texts, check_target_text),
    Target("npy inputs", npy_files, check_npy),
    Target("bundle manifests", manifest_edits, check_manifest),
    Target("cli arguments", cli_argvs, check_cli),
]
