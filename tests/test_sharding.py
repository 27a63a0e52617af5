"""Sharded runs (``--workers N``, ``workers=``) and Ray (``--ray``, ``ray=``): the shards' merged
results equal one run's exactly; a failing shard is retried once, then named by its samples."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import neurocompile
from neurocompile import sharding
from neurocompile.backends.lava.runtime import group_members
from neurocompile.backends.reference import Trace
from neurocompile.cli import main
from neurocompile.evaluate import (digits_for_model, digits_test_samples, run_reference,
                                   spiking_nodes)
from neurocompile.sharding import Job, ShardError, merge_traces, run_sharded, shard_ranges
from neurocompile.verification import comparison


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding") / "sf"
    assert main(["export", "spikformer_digits", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def graph_steps(bundle):
    b = neurocompile.read_bundle(bundle)
    return b.graph, b.steps


@pytest.fixture(scope="module")
def images(graph_steps):
    return digits_for_model(digits_test_samples(None), graph_steps[0], "test").images[:10]


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


# -- shards and merging ---------------------------------------------------------------------------
def test_shard_ranges_cover_the_samples_in_order():
    assert shard_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]  # uneven: the larger ones first
    assert shard_ranges(10, 1) == [(0, 10)]
    assert shard_ranges(1, 4) == [(0, 1)]  # one sample
    assert shard_ranges(3, 8) == [(0, 1), (1, 2), (2, 3)]  # more workers than samples
    for count in range(1, 30):
        for shards in range(1, 12):
            ranges = shard_ranges(count, shards)
            assert ranges[0][0] == 0 and ranges[-1][1] == count
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [b - a for a, b in ranges]
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        shard_ranges(0, 2)
    with pytest.raises(ValueError):
        shard_ranges(5, 0)


def test_merge_concatenates_in_sample_order():
    rng = np.random.default_rng(0)
    a = Trace({"x": rng.integers(0, 2, (3, 4, 5)).astype(np.int8),
               "y": rng.integers(0, 9, (3, 4, 2))}, rng.normal(size=(3, 10)))
    b = Trace({"y": rng.integers(0, 9, (1, 4, 2)),  # another process may order them otherwise
               "x": rng.integers(0, 2, (1, 4, 5)).astype(np.int8)}, rng.normal(size=(1, 10)))
    merged = merge_traces([a, b])
    assert merged.outputs["x"].dtype == np.int8
    assert np.array_equal(merged.outputs["x"], np.concatenate([a.outputs["x"], b.outputs["x"]]))
    assert np.array_equal(merged.logits, np.concatenate([a.logits, b.logits]))
    with pytest.raises(ValueError, match="different nodes"):
        merge_traces([a, Trace({"x": a.outputs["x"]}, a.logits)])


def test_merged_counts_equal_one_run(graph_steps, images):
    """Mismatch counts per layer, spikes compared, accuracies and agreement computed on merged
    shards equal those of the whole run (the shards' mismatches add up)."""
    graph, steps = graph_steps
    reference = run_reference(graph, images, steps, record=spiking_nodes(graph))
    rng = np.random.default_rng(1)
    flipped = {n: np.where(rng.random(v.shape) < 0.01, 1 - v, v).astype(np.int8)
               for n, v in reference.outputs.items()}
    logits = reference.logits.copy()
    logits[3] = logits[3][::-1]  # one prediction differs
    other = Trace(flipped, logits)
    labels = np.arange(len(images)) % 10
    float_pred = reference.predictions()
    whole = comparison(graph, labels, float_pred, reference, other)
    ranges = shard_ranges(len(images), 3)

    def cut(trace, a, b):
        return Trace({n: v[a:b] for n, v in trace.outputs.items()}, trace.logits[a:b])

    parts = [comparison(graph, labels[a:b], float_pred[a:b], cut(reference, a, b),
                        cut(other, a, b)) for a, b in ranges]
    merged = comparison(graph, labels, float_pred,
                        merge_traces([cut(reference, a, b) for a, b in ranges]),
                        merge_traces([cut(other, a, b) for a, b in ranges]))
    assert merged == whole and whole["spike_mismatches"] > 0 and not whole["predictions_equal"]
    for layer, count in whole["spike_mismatches_per_layer"].items():
        assert count == sum(p["spike_mismatches_per_layer"][layer] for p in parts)
    assert whole["spikes_compared"] == sum(p["spikes_compared"] for p in parts)


# -- the integer reference in processes (no Lava) -------------------------------------------------
def test_reference_shards_run_whole_batches():
    ref, lava = Job(reference=True), Job(lava=True)
    assert sharding.extent(ref, 44, 87, 130) == (0, 128)
    assert sharding.extent(ref, 87, 130, 130) == (64, 130)
    assert sharding.extent(ref, 0, 64, 130) == (0, 64)
    assert sharding.extent(lava, 44, 87, 130) == (44, 87)


@pytest.mark.parametrize("workers, count", [(2, 10), (16, 10), (3, 130)])
def test_reference_shards_equal_one_run(graph_steps, workers, count):
    """Every recorded value, the float readout ("head", the logits) included, bit for bit: the
    shards' boundaries cross run_reference's batches of 64."""
    graph, steps = graph_steps
    images = digits_for_model(digits_test_samples(None), graph, "test").images[:count]
    whole = run_reference(graph, images, steps)
    seen = []
    merged = run_sharded(graph, images, steps, Job(reference=True), workers=workers,
                         progress=seen.append)["reference"]
    assert set(merged.outputs) == set(whole.outputs)
    for name, value in whole.outputs.items():
        assert merged.outputs[name].dtype == value.dtype
        assert np.array_equal(merged.outputs[name], value), name
    assert np.array_equal(merged.logits, whole.logits)
    assert seen[-1] == len(images) and seen == sorted(seen)


@pytest.mark.timeout(120)
def test_a_reference_shard_after_torch_ran_in_the_same_thread(graph_steps):
    """GNU OpenMP does not survive a fork: a child forked by the thread that ran torch's
    convolutions (a Ray worker's, running its shards in turn) hangs in its first one, unless it
    sets one thread first. Unpinned, as on a Ray node whose CPUs are all claimed."""
    import torch

    graph, steps = graph_steps
    images = digits_for_model(digits_test_samples(None), graph, "test").images[:256]
    torch.set_num_threads(os.cpu_count())  # restored by conftest's autouse fixture
    whole = run_reference(graph, images, steps)  # torch's OpenMP threads start here
    shard = sharding._run_shard(graph, images, (0, 256), steps, Job(reference=True),
                                lava_timeout_s=30, reference_timeout_s=30, progress=None,
                                cancel=None, chunk=None, cpu=None)
    assert np.array_equal(shard["reference"].logits, whole.logits)


@pytest.mark.parametrize("argv", [["simulate", "--samples", "23", "--json"],
                                  ["report", "--samples", "23", "--format", "json"]])
def test_reference_commands_json_equals_one_worker(bundle, capsys, argv):
    argv = [argv[0], str(bundle), *argv[1:]]
    one = _json(capsys, argv)
    assert _json(capsys, argv + ["--workers", "3"]) == one  # shards of 8, 8, 7
    assert _json(capsys, argv + ["--workers", "1"]) == one


@pytest.fixture
def own_samples(monkeypatch):
    """Reference shards run their own samples only (not the whole batches holding them): a
    stand-in for the reference sees which shard it runs."""
    monkeypatch.setattr(sharding, "extent", lambda job, start, stop, count: (start, stop))


def _flaky(fails_on_start, counter: Path, real):
    """A stand-in for the reference in the child: fails on the shard starting at
    ``fails_on_start`` (every attempt, or the first only), counting attempts in ``counter``."""
    def run(graph, images, steps, record, progress, *, first_only=False):
        if int(images[0].sum()) == fails_on_start:
            with open(counter, "a") as fh:
                fh.write("x")
            if not first_only or counter.stat().st_size == 1:
                raise RuntimeError("boom in this shard")
        return real(graph, images, steps, record, progress)
    return run


def test_a_failing_shard_is_retried_once_then_named(graph_steps, images, tmp_path, monkeypatch,
                                                    own_samples):
    graph, steps = graph_steps
    counter = tmp_path / "attempts"
    start = int(images[4].sum())  # shards (0-3) (4-6) (7-9): the second fails
    monkeypatch.setattr(sharding, "_reference_in_child",
                        _flaky(start, counter, sharding._reference_in_child))
    t0 = time.monotonic()
    with pytest.raises(ShardError) as err:
        run_sharded(graph, images, steps, Job(reference=True), workers=3)
    assert counter.read_text() == "xx"  # tried twice
    assert str(err.value).startswith("integer reference run failed on samples 4-6 (shard 2 of 3, "
                                     "tried twice): RuntimeError: boom in this shard")
    assert "\n" not in str(err.value) and (err.value.start, err.value.stop) == (4, 7)
    assert "boom in this shard" in err.value.traceback_text
    assert time.monotonic() - t0 < 60


def test_a_shard_that_fails_once_is_retried(graph_steps, images, tmp_path, monkeypatch,
                                            own_samples):
    graph, steps = graph_steps
    counter = tmp_path / "attempts"
    real = sharding._reference_in_child
    flaky = _flaky(int(images[7].sum()), counter, real)
    monkeypatch.setattr(sharding, "_reference_in_child",
                        lambda *a: flaky(*a, first_only=True))
    merged = run_sharded(graph, images, steps, Job(reference=True), workers=3)["reference"]
    assert counter.read_text() == "xx"
    assert np.array_equal(merged.logits, run_reference(graph, images, steps).logits)


def test_a_shard_past_its_time_limit_stops_the_run(graph_steps, images, monkeypatch, own_samples):
    """The hung shard is killed at its limit, retried, then named; the other shards, still
    running, are cancelled at once (their process groups killed) rather than awaited."""
    graph, steps = graph_steps
    monkeypatch.setattr(sharding, "_reference_in_child", lambda *a: time.sleep(600))
    # shards (0-3) (4-6) (7-9): the first has a limit of 1 s (times 1.5: 3 shards on 2 cores)
    monkeypatch.setattr(sharding, "reference_timeout", lambda g, n, s: 1.0 if n == 4 else 600)
    t0 = time.monotonic()
    with pytest.raises(ShardError, match=r"^integer reference run failed on samples 0-3 \(shard 1 "
                                         r"of 3, tried twice\): the integer reference exceeded "
                                         r"its time limit of [0-9.]+ s and was killed; the run "
                                         r"was stopped, no result$"):
        run_sharded(graph, images, steps, Job(reference=True), workers=3)
    assert time.monotonic() - t0 < 30
    assert not [t for t in threading.enumerate() if t.name.startswith("neurocompile-shard")]


def test_shards_run_at_the_same_time(graph_steps, images, monkeypatch, own_samples):
    graph, steps = graph_steps
    real = sharding._reference_in_child

    def slow(*args):
        time.sleep(3)
        return real(*args)
    monkeypatch.setattr(sharding, "_reference_in_child", slow)
    t0 = time.monotonic()
    merged = run_sharded(graph, images, steps, Job(reference=True), workers=2)["reference"]
    assert time.monotonic() - t0 < 5.5  # one after the other: 6 s and more
    assert np.array_equal(merged.logits, run_reference(graph, images, steps).logits)


def test_an_isolated_child_dies_with_its_caller(tmp_path):
    """A run_isolated child (its own process group) kills its group when its caller is killed
    (a Ray worker cancelled by force, a SIGKILLed command): nothing is left running."""
    pgid_file = tmp_path / "pgid"
    script = (
        "import os, time\n"
        "from neurocompile.backends.lava.runtime import run_isolated\n"
        "def fn(path):\n"
        "    if os.fork() == 0:\n"  # a grandchild, like Lava's actors
        "        time.sleep(600); os._exit(0)\n"
        f"    open(path, 'w').write(str(os.getpgrp())); time.sleep(600)\n"
        f"run_isolated(fn, {str(pgid_file)!r}, timeout_s=600)\n")
    caller = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not (pgid_file.exists() and pgid_file.read_text()):
            assert time.monotonic() < deadline and caller.poll() is None
            time.sleep(0.05)
        pgid = int(pgid_file.read_text())
        assert len(group_members(pgid)) == 2
        caller.send_signal(signal.SIGKILL)
        caller.wait(10)
        deadline = time.monotonic() + 10
        while group_members(pgid):
            assert time.monotonic() < deadline, "the isolated group outlived its caller"
            time.sleep(0.05)
    finally:
        if caller.poll() is None:
            caller.kill()


# -- Lava -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verify_one(bundle):
    """``verify --samples 3 --json`` with one worker (the JSON every sharded run must equal)."""
    out = subprocess.run([sys.executable, "-m", "neurocompile.cli", "verify", str(bundle),
                          "--samples", "3", "--json"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_verify_in_shards_equals_one_worker(bundle, capsys, verify_one):
    assert verify_one["bit_exact"] and verify_one["samples"] == 3
    # 5 workers for 3 samples: three shards of one sample each, at once
    assert _json(capsys, ["verify", str(bundle), "--samples", "3", "--workers", "5",
                          "--json"]) == verify_one


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_simulate_lava_shards_uneven_and_one_sample(bundle, capsys):
    argv = ["simulate", str(bundle), "--backend", "lava", "--json"]
    one = _json(capsys, argv + ["--samples", "3"])
    assert _json(capsys, argv + ["--samples", "3", "--workers", "2"]) == one  # 2 + 1
    single = _json(capsys, argv + ["--samples", "1", "--workers", "2"])
    assert single["samples"] == 1 and single["predictions"] == one["predictions"][:1]


def _marked(marker: str) -> list[int]:
    """Live processes carrying ``marker`` in their environment (a run's descendants)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat[stat.rfind(")") + 2:].split()[0] != "Z":
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_a_failing_lava_shard_is_one_line(bundle):
    marker = f"NC_SHARDING_{os.getpid()}_{time.monotonic_ns()}"
    out = subprocess.run([sys.executable, "-m", "neurocompile.cli", "verify", str(bundle),
                          "--samples", "3", "--workers", "2", "--timeout", "0.5", "--json"],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, NC_SHARDING_MARK=marker))
    assert out.returncode == 3 and out.stdout == ""
    assert re.fullmatch(r"neurocompile: Lava run failed on (samples 0-1|sample 2) \(shard [12] "
                        r"of 2, tried twice\): Lava run exceeded its time limit of 0\.5 s and "
                        r"was killed; the run was stopped, no result\n", out.stderr), out.stderr
    deadline = time.monotonic() + 15
    while _marked(marker):  # every shard's process tree is gone
        assert time.monotonic() < deadline, "a process of the run is still alive"
        time.sleep(0.1)


def test_bad_workers_are_one_line(bundle):
    out = subprocess.run([sys.executable, "-m", "neurocompile.cli", "simulate", str(bundle),
                          "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "'0' is not a positive integer" in out.stderr
    with pytest.raises(neurocompile.NeurocompileError, match="workers must be a positive"):
        neurocompile.simulate(bundle, np.zeros((1, 1, 8, 8), np.int64), workers=0)


# -- Ray ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.mark.lava
@pytest.mark.timeout(900)
def test_ray_verify_equals_one_worker(bundle, capsys, verify_one, ray_cluster):
    assert _json(capsys, ["verify", str(bundle), "--samples", "3", "--ray", "--workers", "2",
                          "--json"]) == verify_one
    assert ray_cluster.is_initialized()  # a connection it did not open is left open
    # the report (the integer reference alone) through Ray, one shard per CPU of the cluster
    report = ["report", str(bundle), "--samples", "5", "--format", "json"]
    assert _json(capsys, report + ["--ray"]) == _json(capsys, report)


def _shard_workers() -> dict[int, int]:
    """{pid: parent pid} of the processes titled as running a shard: the Ray workers, and the
    isolated children they forked (which inherit the title)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_ray_shard"):
                stat = Path(f"/proc/{pid}/stat").read_text()
                found[int(pid)] = int(stat[stat.rfind(")") + 2:].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return found


def _kill_one_ray_shard(stop: threading.Event, killed: list) -> None:
    """SIGKILL the first Ray worker seen running a shard, once its Lava run has started (a
    worker that dies)."""
    while not stop.is_set():
        found = _shard_workers()
        workers = [pid for pid, parent in found.items() if parent not in found]
        forked = [pid for pid, parent in found.items() if parent in found]
        if workers and forked:
            victim = next(found[pid] for pid in forked)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            return
        time.sleep(0.1)


@pytest.mark.lava
@pytest.mark.timeout(900)
def test_ray_worker_that_dies_fails_only_its_shard(bundle, digits, verify_one, ray_cluster):
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_ray_shard, args=(stop, killed), daemon=True)
    killer.start()
    try:
        result = neurocompile.verify(bundle, digits.test_x[:3].reshape(3, 1, 8, 8),
                                     digits.test_y[:3], workers=2, ray=True)
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen running a shard"
    assert result == {k: v for k, v in verify_one.items() if k != "data"}


@pytest.mark.lava
@pytest.mark.timeout(600)
def test_ray_shard_failure_is_named(bundle, ray_cluster):
    with pytest.raises(ShardError, match=r"^Lava run failed on samples (0-1|2-3) \(shard [12] of "
                                         r"2, tried twice\): Lava run exceeded its time limit of "
                                         r"0\.5 s and was killed"):
        neurocompile.simulate(bundle, np.zeros((4, 1, 8, 8), np.int64), backend="lava",
                              workers=2, ray=True, timeout_s=0.5)
