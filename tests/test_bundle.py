import json
import shutil

import pytest

from neurocompile.bundle import read_bundle, write_bundle
from neurocompile.errors import NeurocompileError
from neurocompile.ir.nir_io import read_nir


@pytest.fixture(scope="module")
def bundle_dir(shipped, tmp_path_factory):
    return write_bundle(shipped, tmp_path_factory.mktemp("b") / "bundle")


def test_bundle_round_trips_the_integer_graph(bundle_dir, shipped):
    bundle = read_bundle(bundle_dir)
    assert list(bundle.graph.nodes) == list(shipped.graph.nodes)
    assert bundle.steps == shipped.steps and bundle.target == "loihi2"
    assert bundle.manifest["overflow"]["proven"] is True
    assert {"nir", "lava-nc", "torch", "numpy"} <= set(bundle.manifest["versions"])


def test_export_is_byte_identical(bundle_dir, shipped, tmp_path):
    again = write_bundle(shipped, tmp_path / "again")
    for name in ("manifest.json", "model.nir", "source.pt"):
        assert (again / name).read_bytes() == (bundle_dir / name).read_bytes(), name


def test_tampered_bundle_is_refused(bundle_dir, tmp_path):
    copy = shutil.copytree(bundle_dir, tmp_path / "copy")
    data = bytearray((copy / "model.nir").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.nir").write_bytes(bytes(data))
    with pytest.raises(NeurocompileError, match="model.nir does not match its hash"):
        read_bundle(copy)


def test_missing_file_and_bad_manifest(bundle_dir, tmp_path):
    copy = shutil.copytree(bundle_dir, tmp_path / "copy")
    (copy / "source.pt").unlink()
    with pytest.raises(NeurocompileError, match="source.pt is missing"):
        read_bundle(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(NeurocompileError, match="not valid JSON"):
        read_bundle(copy)
    with pytest.raises(NeurocompileError, match="no such bundle"):
        read_bundle(tmp_path / "nothing")


def test_export_replaces_a_bundle_but_not_other_directories(shipped, bundle_dir, tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(NeurocompileError, match="not a neurocompile bundle"):
        write_bundle(shipped, other)
    assert (other / "cat.jpg").read_bytes() == b"meow"
    target = shutil.copytree(bundle_dir, tmp_path / "existing")
    write_bundle(shipped, target)
    assert read_bundle(target).manifest["format"] == "neurocompile-bundle"


def test_failed_export_leaves_nothing_behind(shipped, tmp_path, monkeypatch):
    import neurocompile.bundle as bundle_module

    def boom(graph, path):
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle_module, "write_nir", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_bundle(shipped, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_manifest_is_json_with_hashes(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.nir", "source.pt"}
    assert read_nir(bundle_dir / "model.nir").output == "head"


def test_oversized_files_are_refused_before_they_are_read(shipped, tmp_path, monkeypatch):
    """A bundle file beyond the size limit is refused by its size, without being hashed or
    loaded; hashing reads in chunks, so a large file costs no memory."""
    import neurocompile.bundle as bundle_module

    out = write_bundle(shipped, tmp_path / "b")
    monkeypatch.setattr(bundle_module, "MAX_FILE_BYTES", 1000)
    hashed = []
    monkeypatch.setattr(bundle_module, "_sha256", lambda p: hashed.append(p) or "")
    with pytest.raises(NeurocompileError, match=r"model.nir holds \d+ bytes, more than the 1000"):
        read_bundle(out)
    assert hashed == []


def test_hashes_are_read_in_chunks(tmp_path):
    import hashlib

    from neurocompile.bundle import _sha256

    big = tmp_path / "sparse.bin"
    with open(big, "wb") as fh:  # 64 MiB, sparse on disk
        fh.seek((64 << 20) - 1)
        fh.write(b"\0")
    assert _sha256(big) == hashlib.sha256(b"\0" * (64 << 20)).hexdigest()


def _rehash(bundle, **manifest_changes):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(manifest_changes)
    manifest["files"]["model.nir"] = _sha256(bundle / "model.nir")
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_format_1_bundles_are_still_read(bundle_dir, shipped, tmp_path):
    """Format 1: model.nir as nir.write wrote it (gzip), the op arrays in their own dtypes."""
    import nir

    from neurocompile.ir.nir_io import to_nir

    copy = shutil.copytree(bundle_dir, tmp_path / "v1")
    stock = to_nir(shipped.graph)
    stock.metadata["neurocompile"]["format_version"] = 1
    for node in shipped.graph:
        payload = stock.nodes[node.name].metadata["neurocompile"]
        del payload["dtypes"]
        payload["arrays"] = {k: v.reshape(-1) for k, v in node.op.arrays().items()}
    nir.write(copy / "model.nir", stock)
    _rehash(copy, format_version=1)
    graph = read_bundle(copy).graph
    for ours, theirs in zip(graph, shipped.graph):
        for name, array in theirs.op.arrays().items():
            got = getattr(ours.op, name)
            assert got.dtype == array.dtype and (got == array).all(), (ours.name, name)


def test_a_newer_bundle_format_is_refused_in_one_line(bundle_dir, tmp_path):
    copy = shutil.copytree(bundle_dir, tmp_path / "v9")
    _rehash(copy, format_version=9)
    with pytest.raises(NeurocompileError) as info:
        read_bundle(copy)
    assert str(info.value) == (f"{copy / 'manifest.json'}: bundle format version 9 is not "
                               "supported (this neurocompile reads 1, 2); re-export it with "
                               "`neurocompile export MODEL -o DIR`")


def test_the_bundle_stores_each_weight_compactly(bundle_dir, shipped):
    """model.nir holds the integer weights in their smallest exact dtype plus the stock float32
    weights, uncompressed: about 5 bytes a weight (format 1: 16, gzip-compressed)."""
    import h5py

    weights = sum(n.op.weight.size for n in shipped.graph if hasattr(n.op, "weight_exp"))
    size = (bundle_dir / "model.nir").stat().st_size
    with h5py.File(bundle_dir / "model.nir", "r") as f:
        filters = []
        f.visititems(lambda _, obj: filters.append(obj.compression)
                     if isinstance(obj, h5py.Dataset) else None)
    assert set(filters) == {None}
    assert size < 5 * weights + (1 << 20)
