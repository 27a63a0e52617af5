"""Users' own data in ``simulate`` and ``verify``: ``--input`` / ``--labels`` / ``--data`` and
``--samples``, accuracies only against labels (null / n/a without), the data named in the output,
and every bad array refused in one line (exit 2) before anything runs."""
import json
import subprocess
import sys

import numpy as np
import pytest

from neurocompile.backends.reference import run_int
from neurocompile.bundle import read_bundle
from neurocompile.cli import main
from neurocompile.datasets import digits_split

N = 12


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("user_data") / "sf"
    assert main(["export", "spikformer_digits", "--target", "loihi2", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def arrays():
    """N digits test images with labels, three of them wrong (so accuracy is not 1)."""
    split = digits_split()
    x, y = split.test_x[:N], split.test_y[:N].copy()
    y[:3] = (y[:3] + 1) % 10
    return x, y


@pytest.fixture
def files(tmp_path, arrays):
    x, y = arrays
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return {name: str(tmp_path / name) for name in ("x.npy", "y.npy", "d.npz")}


@pytest.fixture(scope="module")
def int_predictions(bundle, arrays):
    """The integer reference's predictions on the same arrays, computed without the CLI."""
    loaded = read_bundle(bundle)
    return run_int(loaded.graph, arrays[0], loaded.steps).predictions()


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _simulate(capsys, bundle, *argv):
    code, out, _ = _cli(capsys, "simulate", bundle, "--backend", "reference", "--json", *argv)
    assert code == 0
    return json.loads(out)


def test_input_and_labels_give_the_accuracy(bundle, files, arrays, int_predictions, capsys):
    data = _simulate(capsys, bundle, "--input", files["x.npy"], "--labels", files["y.npy"])
    assert data["predictions"] == int_predictions.tolist()
    assert data["accuracy"] == pytest.approx(np.mean(int_predictions == arrays[1]))
    assert 0 < data["accuracy"] < 1
    assert data["data"] == {"source": files["x.npy"], "labels": files["y.npy"], "samples": N,
                            "available": N}


def test_data_equals_input_and_labels(bundle, files, capsys):
    separate = _simulate(capsys, bundle, "--input", files["x.npy"], "--labels", files["y.npy"])
    archive = _simulate(capsys, bundle, "--data", files["d.npz"])
    assert archive.pop("data") == {"source": files["d.npz"], "labels": files["d.npz"],
                                   "samples": N, "available": N}
    separate.pop("data")
    assert archive == separate


def test_samples_takes_the_first_k_of_the_input(bundle, files, arrays, int_predictions, capsys):
    data = _simulate(capsys, bundle, "--input", files["x.npy"], "--labels", files["y.npy"],
                     "--samples", 5)
    assert data["predictions"] == int_predictions[:5].tolist()
    assert data["accuracy"] == pytest.approx(np.mean(int_predictions[:5] == arrays[1][:5]))
    assert data["data"]["samples"] == 5 and data["data"]["available"] == N


def test_no_labels_is_null_and_na_never_zero(bundle, files, capsys):
    assert _simulate(capsys, bundle, "--input", files["x.npy"])["accuracy"] is None
    code, out, _ = _cli(capsys, "simulate", bundle, "--input", files["x.npy"], "--samples", 4)
    assert code == 0
    assert "accuracy           n/a" in out and "0.0000" not in out
    assert f"data               {files['x.npy']}, first 4 of {N}, no labels" in out


def test_the_digits_split_is_named(bundle, capsys):
    code, out, _ = _cli(capsys, "simulate", bundle, "--samples", 3)
    assert code == 0
    assert "data               digits test split (sklearn, seed 0, 25 %), first 3 of 450" in out
    data = _simulate(capsys, bundle, "--samples", 3)
    assert data["data"] == {"source": "digits-test", "labels": "digits-test", "samples": 3,
                            "available": 450}


def _write(tmp_path, name, value):
    path = tmp_path / name
    if isinstance(value, str):
        path.write_text(value)
        return str(path)
    with open(path, "wb") as fh:  # a file handle: numpy would add its own suffix to a name
        if isinstance(value, dict):
            np.savez(fh, **value)
        else:
            np.save(fh, value, allow_pickle=True)  # object arrays too: the CLI must refuse them
    return str(path)


IMAGES = np.zeros((N, 1, 8, 8), np.int64)
LABELS = np.zeros(N, np.int64)
OBJECTS = np.array([{"pixel": 1}] * N, dtype=object)
BAD = [  # (files to write, arguments with {x} {y} {d} for their paths, expected message)
    ({"x.npy": np.zeros((N, 8, 8))}, "--input {x}",
     "inputs have shape (12, 8, 8); the bundle takes (N, 1, 8, 8)"),
    ({"x.npy": np.zeros((N, 3, 8, 8))}, "--input {x}",
     "inputs have shape (12, 3, 8, 8); the bundle takes (N, 1, 8, 8)"),
    ({"x.npy": np.zeros((N, 4, 1, 8, 8))}, "--input {x}",
     "shape (12, 4, 1, 8, 8) is time-varying input (N, T, 1, 8, 8); the bundle takes static "
     "inputs (N, 1, 8, 8), the same at every step"),
    ({"x.npy": np.zeros((0, 1, 8, 8))}, "--input {x}", "holds no samples"),
    ({"x.npy": np.full((N, 1, 8, 8), np.nan)}, "--input {x}", "inputs contain NaN or Inf"),
    ({"x.npy": np.full((N, 1, 8, 8), np.inf)}, "--input {x}", "inputs contain NaN or Inf"),
    ({"x.npy": np.full((N, 1, 8, 8), 0.5)}, "--input {x}",
     "inputs must be integer levels 0..16 (the bundle reads level k as k * 0.0625), found 0.5"),
    ({"x.npy": np.full((N, 1, 8, 8), 17)}, "--input {x}", "levels 0..16 (the bundle"),
    ({"x.npy": np.full((N, 1, 8, 8), -1)}, "--input {x}", "found -1"),
    ({"x.npy": IMAGES.astype(str)}, "--input {x}", "inputs must be integer levels, got dtype"),
    ({}, "--input {x}", "x.npy: no such file"),
    ({"x.npy": "0 1 2 3\n"}, "--input {x}", "x.npy: not a .npy array file"),
    ({"x.npy": {"x": IMAGES}}, "--input {x}",
     "an .npz archive, not a .npy array (pass an .npz of inputs x and labels y with --data)"),
    ({"x.npy": np.array([{"pixel": 1}] * N, dtype=object)}, "--input {x}",
     "x.npy: refused: the array holds Python objects"),
    ({"x.npy": IMAGES, "y.npy": LABELS.astype(float)}, "--input {x} --labels {y}",
     "labels must be integer class ids, got dtype float64"),
    ({"x.npy": IMAGES, "y.npy": LABELS[:-1]}, "--input {x} --labels {y}",
     "labels have shape (11,); the 12 inputs need (12,), one class id each"),
    ({"x.npy": IMAGES, "y.npy": LABELS[:, None]}, "--input {x} --labels {y}",
     "labels have shape (12, 1)"),
    ({"x.npy": IMAGES, "y.npy": LABELS - 1}, "--input {x} --labels {y}",
     "labels must be class ids 0..9 (the bundle has 10 classes), found -1"),
    ({"x.npy": IMAGES, "y.npy": LABELS + 10}, "--input {x} --labels {y}", "found 10"),
    ({"x.npy": IMAGES, "y.npy": OBJECTS}, "--input {x} --labels {y}",
     "y.npy: refused: the array holds Python objects"),
    ({"y.npy": LABELS}, "--labels {y}", "--labels needs --input"),
    ({"d.npz": {"x": IMAGES, "y": LABELS}, "x.npy": IMAGES}, "--data {d} --input {x}",
     "--data holds both inputs and labels"),
    ({"d.npz": {"x": IMAGES}}, "--data {d}",
     "d.npz: holds no array 'y' (--data needs x: the inputs, y: their labels; it holds x)"),
    ({"d.npz": {"x": OBJECTS, "y": LABELS}}, "--data {d}",
     "d.npz [x]: refused: the array holds Python objects"),
    ({"d.npz": {"x": IMAGES, "y": LABELS[:3]}}, "--data {d}", "d.npz [y]: labels have shape"),
    ({"d.npz": {"x": IMAGES[:, 0], "y": LABELS}}, "--data {d}",
     "d.npz [x]: inputs have shape (12, 8, 8)"),
    ({"d.npz": IMAGES}, "--data {d}", "d.npz: not a readable .npz archive"),
    ({"x.npy": IMAGES}, "--input {x} --samples 13",
     "--samples must be between 1 and 12 (the samples in"),
    ({"x.npy": IMAGES}, "--input {x} --samples 0", "--samples must be between 1 and 12"),
]


def _refused(capsys, tmp_path, command, bundle, written, argv, message):
    """``command`` with these files refuses them: one line, exit 2, no output, no file."""
    paths = {name.split(".")[0]: _write(tmp_path, name, value) for name, value in written.items()}
    paths.setdefault("x", str(tmp_path / "x.npy"))
    before = sorted(tmp_path.iterdir())
    code, out, err = _cli(capsys, command, bundle, "--json", *argv.format_map(paths).split())
    assert code == 2 and out == ""
    assert err.startswith("neurocompile: error: ") and err.count("\n") == 1, err
    assert message in err
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("written, argv, message", BAD, ids=range(len(BAD)))
def test_bad_data_is_one_line_exit_2_and_nothing_written(bundle, tmp_path, capsys, written, argv,
                                                         message):
    _refused(capsys, tmp_path, "simulate", bundle, written, argv, message)


@pytest.mark.parametrize("case", [2, 6, 18, 22])  # T axis, 0.5, label 10, no y
def test_verify_refuses_bad_data_before_running(bundle, tmp_path, capsys, case):
    _refused(capsys, tmp_path, "verify", bundle, *BAD[case])


def test_a_refusal_from_the_command_line(bundle, tmp_path):
    path = _write(tmp_path, "x.npy", np.zeros((2, 4, 1, 8, 8)))
    result = subprocess.run([sys.executable, "-m", "neurocompile.cli", "simulate", str(bundle),
                             "--input", path], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"neurocompile: error: {path}: shape (2, 4, 1, 8, 8) is time-varying input (N, T, 1, 8, "
        "8); the bundle takes static inputs (N, 1, 8, 8), the same at every step (compile it "
        "from a time-varying example)"]


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_verify_on_user_data(bundle, files, arrays, int_predictions, capsys):
    import torch

    from neurocompile.frontend import load_checkpoint

    model = load_checkpoint(bundle / "source.pt").model.eval()
    with torch.no_grad():
        float_pred = model(torch.from_numpy(arrays[0][:3])).argmax(1).numpy()
    code, out, _ = _cli(capsys, "verify", bundle, "--data", files["d.npz"], "--samples", 3,
                        "--json")
    assert code == 0
    data = json.loads(out)
    labels, int_pred = arrays[1][:3], int_predictions[:3]
    assert data["int_accuracy"] == data["lava_accuracy"] == pytest.approx(
        np.mean(int_pred == labels))
    assert data["float_accuracy"] == pytest.approx(np.mean(float_pred == labels))
    assert data["float_int_prediction_agreement"] == pytest.approx(np.mean(float_pred == int_pred))
    assert data["data"] == {"source": files["d.npz"], "labels": files["d.npz"], "samples": 3,
                            "available": N}
    assert data["bit_exact"]


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_verify_without_labels(bundle, files, capsys):
    code, out, _ = _cli(capsys, "verify", bundle, "--input", files["x.npy"], "--samples", 2)
    assert code == 0
    for name in ("float", "integer", "Lava"):
        assert f"{name + ' accuracy':<19}n/a (no labels)" in out
    assert "float = integer    1.0000 of predictions" in out and "0.0000" not in out
