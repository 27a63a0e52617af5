"""Sharded runs: the samples split into shards, each shard run in its own isolated process tree
on this machine (``workers=N``) or on a Ray cluster (``ray=...``), the results merged.

Every sample starts from the zero state (the Lava network clears its populations at each sample
boundary, the integer reference runs samples independently), so the spikes of a run over samples
``a..b`` are exactly the slice ``a..b`` of a run over all of them. Only the readout (float64
logits, a matrix product) can round differently in the last bit when its batch differs, so the
batches are kept as one run has them: Lava shards return their raw recordings, which are merged
before the readout runs once over all samples (as in ``run_lava``), and a reference shard runs
the whole 64-sample batches of ``run_reference`` that hold its samples and keeps its own rows.
The merged traces are therefore those of one run, array for array, and everything the commands
compute from them (accuracies, mismatch counts per layer, firing rates, predictions, the report's
activity counts) is computed by the same code as for one run: the JSON of a sharded run equals
that of ``--workers 1``.

On this machine each shard runs in a thread of the calling process that calls
``backends.lava.runtime.run_isolated`` (one forked child per run, its own process group, its own
time limit, killed whatever happens; the forks are serialised by ``runtime.FORK_LOCK``). A child
reports the samples it has finished through a slot of anonymous shared memory, which the calling
thread reads for the progress bar. Each shard's children are kept on one CPU (in turn over the
CPUs this process may use) with single-threaded numerical libraries: a Lava run is some forty
processes handing each step to each other, cheaper on one CPU than spread over all of them, and
several such runs left to the scheduler slow each other down.

On Ray each shard is a task (one CPU reserved) that receives the bundle's files as bytes (one
object in the object store), writes them to a temporary directory, reads them back with
``read_bundle`` (which checks every file against the manifest's SHA-256, the manifest itself
being checked against the hash the driver sent), and then runs the shard the same way, in an
isolated child of the Ray worker, kept on a CPU that no other shard on that machine holds
(a lock file per CPU). Progress goes through a small actor.

One worker on this machine is one run as before (the reference in the calling process, Lava in
one isolated child, a failure raising that run's own error at once). With more, or on Ray:

Failures: a shard whose run raises, dies or passes its time limit (or whose Ray worker or node
dies) is retried once (``retries=1``). If it fails again the whole run stops at once (the other
shards are cancelled and their process trees killed) and :class:`ShardError` is raised: one line
naming the shard's samples (0-based indices into the samples run, first and last included) and
the cause. No partial result is returned: a verification that skipped samples would claim what
it has not checked.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import mmap
import os
import queue
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import ir
from .backends.lava.runtime import (LavaCancelledError, LavaError, LavaTimeoutError,
                                    run_isolated)
from .backends.reference import Trace
from .errors import NeurocompileError
from .evaluate import run_reference

__all__ = ["Job", "ShardError", "shard_ranges", "merge_traces", "run_sharded", "bundle_files",
           "reference_timeout"]

#: the batch ``run_reference`` runs samples in (a reference shard runs whole batches of it)
REFERENCE_BATCH: int = inspect.signature(run_reference).parameters["batch"].default
#: ``.phase`` of an error raised by a shard's reference run (and ``ShardError``'s "what")
REFERENCE_PHASE = "integer reference run"
#: how often the coordinator looks at the shards (s)
POLL_S = 0.2
#: on Ray: how long past its own time limits a started shard may stay silent before it is
#: cancelled as hung (its worker is killed), and counted as a failed attempt
RAY_GRACE_S = 120.0


@dataclass(frozen=True)
class Job:
    """What each shard runs: the integer reference (recording the nodes ``record``, None for all
    of them), Lava, or both (``verify``)."""

    reference: bool = False
    lava: bool = False
    record: tuple[str, ...] | None = None

    @property
    def what(self) -> str:
        return "Lava run" if self.lava else "integer reference run"


class ShardError(LavaError):
    """A shard failed (after its retry); the run was stopped. ``str(err)`` is one line naming the
    samples (``start`` .. ``stop - 1``, 0-based) and the cause; ``cause`` is the last failure."""

    def __init__(self, what: str, start: int, stop: int, shard: int, shards: int, attempts: int,
                 cause: str, traceback_text: str = "") -> None:
        tried = {1: "", 2: ", tried twice"}.get(attempts, f", tried {attempts} times")
        samples = f"sample {start}" if stop - start == 1 else f"samples {start}-{stop - 1}"
        super().__init__(f"{what} failed on {samples} (shard {shard + 1} of {shards}{tried}): "
                         f"{cause}; the run was stopped, no result")
        self.start, self.stop, self.shard, self.shards = start, stop, shard, shards
        self.attempts, self.cause, self.traceback_text = attempts, cause, traceback_text


# --------------------------------------------------------------------------------------------------
# shards and merging
# --------------------------------------------------------------------------------------------------

def shard_ranges(count: int, shards: int) -> list[tuple[int, int]]:
    """``min(shards, count)`` contiguous ``(start, stop)`` ranges covering ``0..count``, in order,
    their sizes differing by at most one (the larger ones first)."""
    if count < 1:
        raise ValueError(f"nothing to shard: {count} samples")
    if shards < 1:
        raise ValueError(f"the number of shards must be positive, got {shards}")
    k = min(shards, count)
    base, extra = divmod(count, k)
    ranges, start = [], 0
    for i in range(k):
        stop = start + base + (i < extra)
        ranges.append((start, stop))
        start = stop
    return ranges


def merge_traces(traces: list[Trace]) -> Trace:
    """The shards' traces (in sample order) as the trace of one run: every recorded output and
    the logits concatenated along the sample axis (always copied: writable arrays)."""
    if not traces:
        raise ValueError("no traces to merge")
    names = list(traces[0].outputs)  # (the order may differ between processes: hash seeds)
    for t in traces[1:]:
        if set(t.outputs) != set(names):
            raise ValueError("the shards recorded different nodes")
    return Trace({n: np.concatenate([t.outputs[n] for t in traces]) for n in names},
                 np.concatenate([t.logits for t in traces]))


def extent(job: Job, start: int, stop: int, count: int) -> tuple[int, int]:
    """The samples a shard ``start..stop`` (of ``count``) runs: its own for Lava, the whole
    ``REFERENCE_BATCH`` batches holding them for the reference (module docstring)."""
    if not job.reference:
        return start, stop
    return (start // REFERENCE_BATCH * REFERENCE_BATCH,
            min(count, -(-stop // REFERENCE_BATCH) * REFERENCE_BATCH))


def reference_timeout(graph: ir.Graph, samples: int, steps: int) -> float:
    """A generous time limit for an integer reference shard: 5 minutes plus 2 ms per node per
    sample step (the digits Spikformer needs about 0.3 ms)."""
    return 300.0 + 0.002 * len(graph) * samples * steps


def _lava_timeout(graph: ir.Graph, samples: int, steps: int) -> float:
    from .backends.lava.simulate import default_timeout

    return default_timeout(graph, samples, steps)


def _cpus(shards: int) -> list[int | None]:
    """The CPU each of ``shards`` concurrent shards is kept on: one each, in turn, among those
    this process may use; none for a single shard (one Lava run spreads over the CPUs to its
    profit) or a single CPU.

    Kept on one CPU, a Lava run's many processes hand each step to each other without moving
    between CPUs: on 2 CPUs, two pinned shards of the digits test split took 0.9 of one run's
    time, two left to the scheduler 1.35 of it."""
    allowed = sorted(os.sched_getaffinity(0))
    if shards < 2 or len(allowed) < 2:
        return [None] * shards
    return [allowed[i % len(allowed)] for i in range(shards)]


def _contention(workers: int) -> float:
    """How much slower each of ``workers`` concurrent runs goes than one alone on this machine."""
    return max(1.0, workers / (os.cpu_count() or 1))


# --------------------------------------------------------------------------------------------------
# one shard (in a thread here, or in a Ray worker)
# --------------------------------------------------------------------------------------------------

class _Slots:
    """Per-shard counters in anonymous shared memory: a forked child writes its own slot, the
    parent reads them all."""

    def __init__(self, n: int) -> None:
        self._mm = mmap.mmap(-1, 8 * max(n, 1))

    def set(self, i: int, value: int) -> None:
        struct.pack_into("q", self._mm, 8 * i, int(value))

    def get(self, i: int) -> int:
        return struct.unpack_from("q", self._mm, 8 * i)[0]

    def reporter(self, i: int) -> Callable[[int], None]:
        return lambda done: self.set(i, done)


def _one_thread() -> None:
    """Single-threaded numerical libraries in this (forked) process and the processes it forks:
    OpenBLAS (numpy) and torch's OpenMP pool.

    Two reasons. Kept on one CPU, extra threads only spin against each other (a reference shard
    took 25 s instead of 1). And GNU OpenMP does not survive a fork: a child that runs a torch
    operation after its parent ran one hangs for good, unless it first sets one thread."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl missing: threads stay as they are
        pass


def _pinned(cpu: int | None, fn: Callable, *args):
    """``fn(*args)`` in an isolated child kept on one CPU with single-threaded libraries (its
    Lava actors inherit both); as it is for ``cpu`` None."""
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:  # pragma: no cover - that CPU is gone: run unpinned
            pass
        _one_thread()
    return fn(*args)


def _reference_in_child(graph, images, steps, record, progress):
    if "torch" in sys.modules:  # a torch operation in a forked child (see _one_thread)
        sys.modules["torch"].set_num_threads(1)
    return run_reference(graph, images, steps, progress=progress, batch=REFERENCE_BATCH,
                         record=None if record is None else list(record))


def progress_chunk(samples: int, steps: int) -> int:
    """Lava steps per chunk of a shard: about a tenth of its steps (so that its progress is
    reported about ten times), 64 to 256 (short chunks cost a pause each)."""
    return int(min(256, max(64, -(-samples * steps // 10))))


def _lava_in_child(graph, images, steps, chunk, progress):
    from .backends.lava.simulate import lava_recordings

    chunk = chunk or progress_chunk(len(images), steps)
    return lava_recordings(graph, images, steps, chunk=chunk, progress=progress)


def _run_shard(graph: ir.Graph, images: np.ndarray, keep: tuple[int, int], steps: int, job: Job,
               *, lava_timeout_s: float, reference_timeout_s: float,
               progress: Callable[[int], None] | None, cancel: threading.Event | None,
               chunk: int | None, cpu: int | None = None) -> dict:
    """One shard: ``images`` are the samples of its :func:`extent`, ``keep`` the range of its own
    among them. The reference (a Trace of its own rows) and / or Lava (its raw recordings), each
    run in its own isolated child (time limit, killed process group). Progress counts its own
    samples done by the last of them. ``cpu``: the CPU its children are kept on (None: any).
    """
    a, b = keep
    out = {}
    if job.reference:
        report = None
        if progress is not None and not job.lava:
            def report(done: int) -> None:
                progress(min(max(done - a, 0), b - a))
        try:
            trace = run_isolated(_pinned, cpu, _reference_in_child, graph, images, steps,
                                 job.record, report, timeout_s=reference_timeout_s,
                                 cancel_event=cancel)
            out["reference"] = Trace({n: v[a:b] for n, v in trace.outputs.items()},
                                     trace.logits[a:b])
        except LavaTimeoutError as exc:
            err = LavaTimeoutError(f"the integer reference exceeded its time limit of "
                                   f"{reference_timeout_s:g} s and was killed",
                                   reference_timeout_s)
            err.phase = REFERENCE_PHASE
            raise err from exc
        except LavaError as exc:
            exc.phase = REFERENCE_PHASE  # ShardError then names the reference, not Lava
            raise
    if job.lava:
        out["lava"] = run_isolated(_pinned, cpu, _lava_in_child, graph, images[a:b], steps,
                                   chunk, progress, timeout_s=lava_timeout_s,
                                   cancel_event=cancel)
    return out


def _what(job: Job, exc: BaseException | None) -> str:
    """What failed: the shard's reference run, or its Lava run (or the job's only run)."""
    return getattr(exc, "phase", None) or job.what


def _cause(exc: BaseException) -> tuple[str, str]:
    """(one line, traceback text) of a shard's failure."""
    import traceback

    tb = getattr(exc, "traceback_text", "") or "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, LavaError):
        return str(exc), tb
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__), tb


# --------------------------------------------------------------------------------------------------
# on this machine
# --------------------------------------------------------------------------------------------------

def _run_local(graph, images, steps, job, ranges, *, timeout_s, progress, retries, chunk,
               workers, plain: bool = False) -> list[dict[str, Trace]]:
    """The shards in threads of this process; ``plain``: a failure raises the run's own error
    (one run, ``workers=1``), not a ShardError."""
    factor = _contention(min(workers, len(ranges)))
    cpus = _cpus(len(ranges))
    slots = _Slots(len(ranges))
    cancel = threading.Event()
    events: queue.Queue = queue.Queue()

    def shard(i: int, start: int, stop: int) -> None:
        lo, hi = extent(job, start, stop, len(images))
        lava_s = timeout_s or _lava_timeout(graph, stop - start, steps) * factor
        ref_s = reference_timeout(graph, hi - lo, steps) * factor
        attempts = 0
        while True:
            attempts += 1
            slots.set(i, 0)
            try:
                result = _run_shard(graph, images[lo:hi], (start - lo, stop - lo), steps, job,
                                    lava_timeout_s=lava_s, reference_timeout_s=ref_s,
                                    progress=slots.reporter(i), cancel=cancel, chunk=chunk,
                                    cpu=cpus[i])
            except LavaCancelledError:
                events.put((i, "cancelled", None, attempts))
                return
            except BaseException as exc:  # noqa: BLE001 - every failure is the shard's
                if attempts <= retries and not cancel.is_set():
                    continue
                events.put((i, "error", exc, attempts))
                return
            events.put((i, "ok", result, attempts))
            return

    threads = [threading.Thread(target=shard, args=(i, a, b), daemon=True,
                                name=f"neurocompile-shard-{i}")
               for i, (a, b) in enumerate(ranges)]
    results: dict[int, dict] = {}
    failure = None
    try:
        for thread in threads:
            thread.start()
        while len(results) < len(ranges) and failure is None:
            try:
                i, status, value, attempts = events.get(timeout=POLL_S)
            except queue.Empty:
                pass
            else:
                if status == "ok":
                    results[i] = value
                else:
                    a, b = ranges[i]
                    cause, tb = _cause(value) if value is not None else ("cancelled", "")
                    failure = ShardError(_what(job, value), a, b, i, len(ranges), attempts,
                                         cause, tb)
                    failure.__cause__ = value
            if progress is not None:
                progress(sum(b - a if i in results else min(slots.get(i), b - a)
                             for i, (a, b) in enumerate(ranges)))
    finally:
        if len(results) < len(ranges):  # a failure, Ctrl-C or another error: stop every shard
            cancel.set()
        for thread in threads:
            thread.join()
    if failure is not None:
        if plain and isinstance(failure.__cause__, BaseException):
            raise failure.__cause__
        raise failure
    return [results[i] for i in range(len(ranges))]


# --------------------------------------------------------------------------------------------------
# on Ray
# --------------------------------------------------------------------------------------------------

def bundle_files(path: str | Path) -> dict[str, bytes]:
    """The bytes of a bundle's manifest and of every file it lists (what a Ray worker gets)."""
    from .bundle import MANIFEST, read_bundle

    bundle = read_bundle(path)  # refuses a damaged bundle before anything is sent
    names = [MANIFEST, *bundle.manifest["files"]]
    return {name: (bundle.path / name).read_bytes() for name in names}


_BUNDLES: dict[str, tuple[ir.Graph, int]] = {}


def _unpack_bundle(files: dict[str, bytes], manifest_sha256: str) -> tuple[ir.Graph, int]:
    """(graph, steps) of the shipped bundle, written to a temporary directory and read back with
    its hashes checked; kept per worker process (by manifest hash) for its next shards."""
    from .bundle import MANIFEST, read_bundle

    if manifest_sha256 in _BUNDLES:
        return _BUNDLES[manifest_sha256]
    manifest = files.get(MANIFEST, b"")
    if hashlib.sha256(manifest).hexdigest() != manifest_sha256:
        raise NeurocompileError("the bundle's manifest arrived damaged (its SHA-256 differs from "
                                "the one the driver sent)")
    with tempfile.TemporaryDirectory(prefix="neurocompile-bundle-") as tmp:
        for name, data in files.items():
            if name != Path(name).name or name in ("", ".", ".."):
                raise NeurocompileError(f"the shipped bundle holds a bad file name {name!r}")
            (Path(tmp) / name).write_bytes(data)
        bundle = read_bundle(tmp)  # checks every file against the manifest's SHA-256
        entry = (bundle.graph, bundle.steps)
    _BUNDLES.clear()
    _BUNDLES[manifest_sha256] = entry
    return entry


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in ("neurocompile", "lava-nc", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


class _Tracker:
    """A Ray actor: the shards' progress, (attempt, started, samples done) per shard."""

    def __init__(self, shards: int) -> None:
        self.state = [(0, False, 0)] * shards

    def start(self, shard: int, attempt: int) -> None:
        if attempt >= self.state[shard][0]:
            self.state[shard] = (attempt, True, 0)

    def update(self, shard: int, attempt: int, done: int) -> None:
        if attempt == self.state[shard][0]:
            self.state[shard] = (attempt, True, done)

    def snapshot(self) -> list:
        return self.state


@contextlib.contextmanager
def _claimed_cpu():
    """A CPU of this machine that no other shard on it holds, or None (a single CPU, or all
    taken): an exclusive ``flock`` on a file per CPU in the temporary directory, released when
    the shard ends or its process dies. Ray does not say which CPU a task got; this does."""
    import fcntl

    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        yield None
        return
    for cpu in allowed:
        path = os.path.join(tempfile.gettempdir(), f"neurocompile-cpu-{cpu}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            yield cpu
        finally:
            os.close(fd)
        return
    yield None


def _ray_shard(files: dict[str, bytes], manifest_sha256: str, images: np.ndarray,
               keep: tuple[int, int], job: Job, shard: int, attempt: int, lava_timeout_s: float,
               reference_timeout_s: float, chunk: int | None, tracker,
               versions: dict[str, str]) -> dict:
    """A Ray task: one shard on the worker, from the shipped bundle."""
    import socket

    mine = _versions()
    if mine != versions:
        diff = ", ".join(f"{k} {mine.get(k)} (driver: {v})" for k, v in versions.items()
                         if mine.get(k) != v)
        raise NeurocompileError(f"the Ray worker on {socket.gethostname()} has {diff}: install "
                                "the same versions on every node")
    tracker.start.remote(shard, attempt)
    graph, steps = _unpack_bundle(files, manifest_sha256)
    slots = _Slots(1)
    stop = threading.Event()

    def report() -> None:
        last = 0
        while not stop.wait(1.0):
            done = slots.get(0)
            if done != last:
                tracker.update.remote(shard, attempt, done)
                last = done

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        # Ray copies a worker's stdout to the driver's: keep the driver's --json output clean
        with contextlib.redirect_stdout(sys.stderr), _claimed_cpu() as cpu:
            return _run_shard(graph, np.array(images), keep, steps, job,
                              lava_timeout_s=lava_timeout_s,
                              reference_timeout_s=reference_timeout_s,
                              progress=slots.reporter(0), cancel=None, chunk=chunk, cpu=cpu)
    finally:
        stop.set()
        reporter.join()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise NeurocompileError("--ray needs Ray on this machine and on the cluster's nodes: "
                                "pip install 'neurocompile[ray]'") from None
    return ray


def _connect(ray, address: str | None, log_to_driver: bool) -> bool:
    """Connect to (or start) a cluster unless connected already; True if this call connected."""
    import logging

    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, log_to_driver=log_to_driver, logging_level=logging.WARNING,
                 include_dashboard=False if address is None else None)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = "a local Ray cluster" if address is None else f"the Ray cluster at {address}"
        text = " ".join(str(exc).split())[:300]
        raise NeurocompileError(f"cannot connect to {where}: {text}") from exc
    return True


def _ray_error(ray, exc: BaseException) -> tuple[str, str, BaseException | None]:
    """(one line, traceback, the shard's own error if it raised one) of a failed Ray task."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
        return (*_cause(cause), cause)
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return (f"its Ray worker died ({type(exc).__name__})", str(exc), None)
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": "), str(exc), None)


def _run_ray(files, graph, images, steps, job, *, workers, address, timeout_s, progress,
             retries, chunk, log_to_driver) -> list[dict[str, Trace]]:
    ray = _import_ray()
    connected = _connect(ray, address, log_to_driver)
    try:
        from .bundle import MANIFEST

        if workers is None:  # one shard per CPU of the cluster
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        ranges = shard_ranges(len(images), workers)
        if callable(files):
            files = files()
        payload = ray.put(files)
        manifest_sha = hashlib.sha256(files[MANIFEST]).hexdigest()
        versions = _versions()
        tracker = ray.remote(num_cpus=0)(_Tracker).remote(len(ranges))
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_shard)
        extents = [extent(job, a, b, len(images)) for a, b in ranges]
        shard_images = [ray.put(np.ascontiguousarray(images[lo:hi])) for lo, hi in extents]
        limits = [(timeout_s or _lava_timeout(graph, b - a, steps),
                   reference_timeout(graph, hi - lo, steps))
                  for (a, b), (lo, hi) in zip(ranges, extents)]
        attempts = [0] * len(ranges)
        started_at: dict[int, float] = {}
        running: dict[Any, int] = {}

        def submit(i: int) -> None:
            attempts[i] += 1
            started_at.pop(i, None)
            (a, b), (lo, _) = ranges[i], extents[i]
            ref = task.remote(payload, manifest_sha, shard_images[i], (a - lo, b - lo), job, i,
                              attempts[i], limits[i][0], limits[i][1], chunk, tracker, versions)
            running[ref] = i

        def cancel_all() -> None:
            for ref in list(running):
                try:
                    ray.cancel(ref)  # KeyboardInterrupt in the task: run_isolated kills its group
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass

        for i in range(len(ranges)):
            submit(i)
        results: dict[int, dict] = {}
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                failed: list[tuple] = []
                for ref in ready:
                    i = running.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failed.append((i, *_ray_error(ray, exc)))
                state = ray.get(tracker.snapshot.remote())
                now = time.monotonic()
                for ref, i in list(running.items()):  # a started shard silent for too long: hung
                    attempt, started, _ = state[i]
                    if started and attempt == attempts[i]:
                        started_at.setdefault(i, now)
                        limit = sum(limits[i]) + RAY_GRACE_S
                        if now - started_at[i] > limit:
                            running.pop(ref)
                            ray.cancel(ref, force=True)
                            failed.append((i, f"its Ray worker gave no answer within {limit:g} s "
                                              "and was killed", "", None))
                for i, cause, tb, exc in failed:
                    if attempts[i] <= retries:
                        submit(i)
                        continue
                    a, b = ranges[i]
                    raise ShardError(_what(job, exc), a, b, i, len(ranges), attempts[i], cause,
                                     tb)
                if progress is not None:
                    progress(sum(b - a if i in results else
                                 (min(state[i][2], b - a) if state[i][0] == attempts[i] else 0)
                                 for i, (a, b) in enumerate(ranges)))
        finally:
            if running:  # a failure, Ctrl-C or another error: stop every shard
                cancel_all()
                try:  # let the workers kill their Lava process trees before any shutdown
                    ray.wait(list(running), num_returns=len(running), timeout=10)
                except Exception:  # noqa: BLE001 - Ctrl-C again, or the cluster is gone
                    pass
        return [results[i] for i in range(len(ranges))]
    finally:
        if connected:
            ray.shutdown()


# --------------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------------

def run_sharded(graph: ir.Graph, images: np.ndarray, steps: int, job: Job, *,
                workers: int | None = None, ray: bool | str | None = None,
                files: dict[str, bytes] | Callable[[], dict[str, bytes]] | None = None,
                timeout_s: float | None = None, progress: Callable[[int], None] | None = None,
                retries: int = 1, chunk: int | None = None,
                log_to_driver: bool = True) -> dict[str, Trace]:
    """Run ``job`` over ``images`` in shards and return the merged traces, ``{"reference": ...,
    "lava": ...}`` (those the job runs), equal to those of one run over all samples.

    ``workers``: the number of shards (at most one per sample): on this machine, run at once,
    each in its own isolated process tree (1 by default); on Ray, tasks of one CPU each (by
    default as many as the cluster has CPUs). ``ray``: None / False for this machine, True for
    ``ray.init()``'s default (the cluster named by RAY_ADDRESS or started with ``ray start`` on
    this machine, else a new local one), or a cluster address (``HEAD:6379``, ``auto``,
    ``ray://HEAD:10001``); a Ray connection that is already open is used as it is (and left
    open). ``files``: the bundle's files (:func:`bundle_files`, or a callable giving them),
    needed with ``ray`` only. ``timeout_s``: the time limit of each shard's Lava run (default:
    sized to the shard, and to the number of shards per core). ``progress(done)`` is called from
    the calling thread with the number of samples finished. A shard failing ``retries + 1``
    times raises :class:`ShardError`. ``chunk``: Lava steps per chunk (default
    :func:`progress_chunk`).

    One worker on this machine (the default) is one run as before: the reference in this
    process, Lava in one isolated child, no retry, and a failure raises the run's own error
    (``LavaTimeoutError``, ``LavaRunError``).
    """
    images = np.asarray(images)
    if not (job.reference or job.lava):
        raise ValueError("the job runs nothing")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise NeurocompileError(f"workers must be a positive integer, got {workers!r}")
    if ray is not None and ray is not False:
        if files is None:
            raise NeurocompileError("a run on Ray needs the bundle's files (sharding.bundle_files)")
        parts = _run_ray(files, graph, images, steps, job, workers=workers,
                         address=None if ray is True else str(ray), timeout_s=timeout_s,
                         progress=progress, retries=retries, chunk=chunk,
                         log_to_driver=log_to_driver)
    elif (workers or 1) == 1:  # one run, as always: no retry, its own error if it fails
        out = {}
        if job.reference:  # in this process
            out["reference"] = run_reference(
                graph, images, steps, progress=None if job.lava else progress,
                record=None if job.record is None else list(job.record))
        if job.lava:  # in one isolated child
            (part,) = _run_local(graph, images, steps, Job(lava=True), [(0, len(images))],
                                 timeout_s=timeout_s, progress=progress, retries=0, chunk=chunk,
                                 workers=1, plain=True)
            from .backends.lava.simulate import lava_trace

            out["lava"] = lava_trace(graph, part["lava"], steps)
        return out
    else:
        ranges = shard_ranges(len(images), workers)
        parts = _run_local(graph, images, steps, job, ranges, timeout_s=timeout_s,
                           progress=progress, retries=retries, chunk=chunk, workers=workers)
    merged = {}
    if job.reference:
        merged["reference"] = merge_traces([p["reference"] for p in parts])
    if job.lava:
        from .backends.lava.simulate import lava_trace

        recordings = [p["lava"] for p in parts]
        merged["lava"] = lava_trace(graph, {n: np.concatenate([r[n] for r in recordings])
                                            for n in recordings[0]}, steps)
    return merged
