"""Running Lava networks so that a run always ends.

Lava 0.10's Python runtime is fragile: an exception inside a ProcessModel's ``run_spk`` leaves the
other ProcessModels blocked on their channels (the whole run deadlocks, the exception is never
shown), and an interpreter whose runtime was never ``stop()``-ped hangs at exit, joining its
actor processes. Two tools here contain that:

``run_isolated(fn, *args, timeout_s=..., **kwargs)``
    runs ``fn`` in a forked child that leads its own process group, returns its (picklable) result,
    and in every other case kills the whole group with SIGKILL and raises a :class:`LavaError`:
    :class:`LavaRunError` if ``fn`` raised (or the child died), :class:`LavaTimeoutError` if the
    time limit passed. Lava's actor processes are descendants of the child, hence in its group, so
    nothing survives the call. Results come back through a pickle file (no pipe-size limits;
    several MB of arrays are fine) in a temporary directory private to the run, which also holds
    every temporary file of the child and of Lava (``TMPDIR``, multiprocessing's ``pymp-*``) and is
    removed when the call ends. A run that runs out of memory in any of its threads (a
    ``MemoryError``, a thread that cannot start) fails at once with :class:`LavaRunError` instead
    of deadlocking until its time limit.

``record(net_procs, probes, num_steps, chunk=256)``
    builds the runtime for a network, taps every probed OutPort with a stock
    :class:`lava.proc.io.extractor.Extractor`, runs ``num_steps`` steps in chunks of ``chunk``
    steps with ``Loihi2SimCfg(select_tag='fixed_pt')``, drains the Extractors after each chunk and
    returns ``{name: array of shape (num_steps, *port_shape)}``. While a chunk runs it watches the
    actor processes: if a ProcessModel raises, it raises :class:`LavaRunError` at once with the
    model's traceback instead of deadlocking. It must be called INSIDE ``run_isolated`` (after a
    ProcessModel failure the runtime cannot be stopped; the isolated child is simply killed).

Semantics checked by ``tests/backends/lava/test_lava_semantics.py``:

* ProcessModels see ``self.time_step`` = 1, 2, ... (the first step is 1).
* Extractor data are aligned: the ``t``-th array received (t = 0, 1, ...) is exactly what the
  probed OutPort sent during Lava time step ``t + 1``; an Extractor adds no delay (an
  OutPort -> InPort connection has none).

Other Lava 0.10 traps handled here:

* the Extractor's ProcessModels are untagged, so ``select_tag='fixed_pt'`` rejects them unless they
  are mapped explicitly (:func:`fixed_pt_run_cfg`);
* Lava compiles only the processes connected to the one ``run`` is called on, and a runtime that
  was initialised but never started cannot be stopped (``stop()`` joins actors that wait forever):
  :func:`record` checks connectivity before building;
* importing Lava calls ``multiprocessing.set_start_method('fork')`` without ``force``, which raises
  inside a multiprocessing child; the child clears the default context first;
* ``Process.join(timeout)`` on the child waits on a pipe that Lava's actors inherit, so it would
  only return at the timeout after a failed run; the child is polled with ``waitpid`` instead;
* shared-memory segments of a killed run are unlinked by a resource tracker private to the child
  and living outside its process group;
* a child whose caller dies (SIGKILL, a Ray worker cancelled by force) kills its own process
  group and removes the run's temporary directory: a thread of the child watches its parent pid
  (every 0.1 s);
* Lava's actors do not report an exception raised in a thread other than their main one (the run
  then waits forever): the child and the actors it forks note running out of memory in any thread
  in a file of the run's directory, which the caller polls.

Several threads may call ``run_isolated`` at once (``neurocompile.sharding`` runs one shard per
thread). A fork copies only the calling thread, so a lock another thread holds at that moment
stays held for good in the child. The forks are therefore serialised by :data:`FORK_LOCK`, and
the threads that wait for their children only sleep, poll ``waitpid`` and read /proc: they hold
no lock a child needs. Code that draws on the terminal from another thread while children are
forked (a progress bar) takes :data:`FORK_LOCK` around its writes. ``cancel_event`` ends a call
early from another thread (the group is killed, :class:`LavaCancelledError` is raised).
"""
from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Mapping

import numpy as np

__all__ = [
    "LavaError", "LavaRunError", "LavaTimeoutError", "LavaCancelledError", "FORK_LOCK",
    "run_isolated", "record", "fixed_pt_run_cfg", "group_members",
]


class LavaError(RuntimeError):
    """A Lava run did not complete."""


class LavaRunError(LavaError):
    """The Lava run raised (in the isolated child or in one of Lava's ProcessModels).

    ``str(err)`` is one line (``"ExcType: message"``); ``err.traceback_text`` holds the full
    traceback text of the failure (the child's, followed by the failing ProcessModel's if any);
    ``err.exc_type`` is the name of the original exception class.
    """

    def __init__(self, message: str, traceback_text: str = "", exc_type: str = "") -> None:
        super().__init__(message)
        self.traceback_text = traceback_text
        self.exc_type = exc_type


class LavaTimeoutError(LavaError):
    """The Lava run did not finish within its time limit and was killed."""

    def __init__(self, message: str, timeout_s: float = 0.0) -> None:
        super().__init__(message)
        self.timeout_s = timeout_s


class LavaCancelledError(LavaError):
    """The run was cancelled (``run_isolated``'s ``cancel_event`` was set) and killed."""


#: held while a child is forked: no two threads fork at once (see the module docstring)
FORK_LOCK = threading.Lock()

#: the child's pickled result, in the run's directory
_RESULT_FILE = "result.pkl"


# --------------------------------------------------------------------------------------------------
# run_isolated
# --------------------------------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    name = type(exc).__name__
    if isinstance(exc, LavaRunError):  # already "Type: message"
        return msg or name
    return f"{name}: {msg}" if msg else name


def _use_private_resource_tracker() -> None:
    """Give this (child) process its own multiprocessing resource tracker.

    Lava's SharedMemoryManager creates shared-memory segments that the resource tracker unlinks if
    their creator dies. The tracker is started here, before ``os.setsid``, so it stays outside the
    process group that a timeout kills: it then sees its writers vanish and unlinks the leaked
    segments at once. Without this the tracker would either be the caller's (cleaning up only when
    the caller exits) or be started inside the killed group (leaking /dev/shm segments for good).
    Its stderr is /dev/null: all it could print is an expected "leaked shared_memory objects"
    warning, or a traceback after a run short of memory lost a registration.
    """
    from multiprocessing import resource_tracker as rt

    tracker = rt.ResourceTracker()
    rt._resource_tracker = tracker
    rt.ensure_running = tracker.ensure_running
    rt.register = tracker.register
    rt.unregister = tracker.unregister
    rt.getfd = tracker.getfd
    stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        tracker.ensure_running()
    finally:
        os.dup2(stderr, 2)
        os.close(stderr)
        os.close(devnull)


_LAVA_MP_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"


def _import_lava_multiprocessing() -> None:
    """Import Lava's message infrastructure in the child.

    That module calls ``multiprocessing.set_start_method('fork')`` (without ``force``) at import,
    which raises "context has already been set" inside a multiprocessing child, whose start method
    was already fixed by its bootstrap. The default context is cleared so that Lava can set it.
    """
    if _LAVA_MP_MODULE in sys.modules:
        return
    import multiprocessing.context as mpc

    mpc._default_context._actual_context = None
    try:
        __import__(_LAVA_MP_MODULE)
    except ImportError:  # pragma: no cover - Lava not installed: fn may not need it
        pass


def _watch_parent(parent: int, run_dir: str, poll_s: float = 0.1) -> None:
    """End this run as soon as ``parent`` (the caller of ``run_isolated``) is gone.

    The group left the caller's with ``setsid``, so nothing else would end it if the caller were
    killed (a Ray worker cancelled by force, a SIGKILLed command): a deadlocked Lava run would
    stay for good. A daemon thread of the child; it only sleeps and reads the parent pid. Once the
    parent is gone it kills the rest of the group, removes the run's directory (which the parent
    can no longer do), then kills the group, itself included.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        group, me = os.getpgrp(), os.getpid()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            others = [pid for pid in group_members(group) if pid != me]
            if not others:
                break
            for pid in others:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.005)
        for _ in range(10):  # a file created meanwhile fails the directory's removal
            shutil.rmtree(run_dir, ignore_errors=True)
            if not os.path.exists(run_dir):
                break
        os.killpg(group, signal.SIGKILL)

    threading.Thread(target=watch, name="lava-isolated-watch-parent", daemon=True).start()


#: name of the file, in a run's directory, where its processes note that they ran out of memory
_EXHAUSTED_NOTE = "out-of-memory"


def _is_exhaustion(exc: BaseException | None) -> bool:
    """Did ``exc`` come from running out of memory (or of room for a thread's stack)?"""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return True
    return isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)


def _note_exhaustion_in(run_dir: str) -> None:
    """Make a thread that dies of memory exhaustion, in this process or in any process it forks
    (Lava's actors), leave a note in ``run_dir`` for the caller instead of a traceback."""
    note = os.path.join(run_dir, _EXHAUSTED_NOTE)
    thread_hook, unraisable_hook = threading.excepthook, sys.unraisablehook

    def leave_note(exc: BaseException) -> None:
        try:  # no allocation beyond the message: memory is short
            fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, f"{_one_line(exc)}\n".encode())
            finally:
                os.close(fd)
        except BaseException:  # noqa: BLE001 - the caller still has the time limit
            pass

    def on_thread_exception(args) -> None:
        if _is_exhaustion(args.exc_value):
            leave_note(args.exc_value)
        else:
            thread_hook(args)

    def on_unraisable(info) -> None:  # a thread that failed to start reports here
        if _is_exhaustion(info.exc_value):
            leave_note(info.exc_value)
        else:
            unraisable_hook(info)

    threading.excepthook = on_thread_exception
    sys.unraisablehook = on_unraisable


def _use_run_dir(run_dir: str) -> None:
    """Create every temporary file of this (child) process and of its descendants in ``run_dir``:
    the parent removes it whatever happens, while the child itself never cleans up (``_exit``)."""
    os.environ["TMPDIR"] = run_dir
    tempfile.tempdir = run_dir
    # multiprocessing's per-process directory (else a pymp-* one, or the parent's, which a forked
    # child inherits) for the sockets of Lava's managers: run_dir itself keeps their paths short
    # (at most 107 bytes)
    multiprocessing.current_process()._config["tempdir"] = run_dir


def _child_main(run_dir: str, fn: Callable, args: tuple, kwargs: dict, parent: int) -> None:
    code = 0
    path = os.path.join(run_dir, _RESULT_FILE)
    try:
        try:
            _use_run_dir(run_dir)
            _note_exhaustion_in(run_dir)
            try:
                _use_private_resource_tracker()
            except Exception:  # pragma: no cover - the run can still go on without it
                pass
            _import_lava_multiprocessing()
            try:
                os.setsid()
            except OSError:  # pragma: no cover - already a group leader
                pass
            _watch_parent(parent, run_dir)
            payload: tuple = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            code = 1
            tb = traceback.format_exc()
            inner = getattr(exc, "traceback_text", "")
            if inner:
                tb = f"{tb}\n{inner}"
            message = _one_line(exc)
            if _is_exhaustion(exc):
                message = f"the Lava run ran out of memory ({message})"
            payload = ("err", type(exc).__name__ if not isinstance(exc, LavaRunError)
                       else (exc.exc_type or "LavaRunError"), message, tb)
        try:
            with open(path, "wb") as fh:
                pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # noqa: BLE001 - e.g. an unpicklable result
            code = 1
            with open(path, "wb") as fh:
                pickle.dump(("err", type(exc).__name__,
                             f"the result could not be sent back: {_one_line(exc)}",
                             traceback.format_exc()), fh)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            if os.getppid() != parent:  # the watcher cleans up, then kills this process
                time.sleep(30)
        finally:
            # Never run atexit handlers / multiprocessing finalizers: they join Lava's actor
            # processes and hang when a runtime was not stopped. The parent kills the group.
            os._exit(code)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def group_members(pgid: int, *, include_zombies: bool = False) -> list[int]:
    """Pids of the live processes whose process group is ``pgid`` (scans /proc)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _proc_stat(int(name))
        if stat is None or stat[2] != pgid:
            continue
        if stat[0] == "Z" and not include_zombies:
            continue
        pids.append(int(name))
    return pids


def _kill_group(pgid: int, *, wait_s: float = 5.0) -> None:
    """SIGKILL every process of group ``pgid`` and wait until none is alive (zombies excepted)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:  # pragma: no cover - pgid reused by someone else's group
            return
        if not group_members(pgid) or time.monotonic() > deadline:
            return
        time.sleep(0.005)


def _wait_exit(proc, timeout_s: float, cancel_event: threading.Event | None = None,
               exhausted_note: str | None = None) -> None:
    """Wait until the child exits, ``timeout_s`` passes, ``cancel_event`` is set or the file
    ``exhausted_note`` appears, by polling ``waitpid``.

    ``proc.join(timeout)`` is not usable: it waits on a sentinel pipe that the child's own children
    (Lava's actors) inherit, so after a failed Lava run it only returns at the timeout.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while proc.exitcode is None:
        left = deadline - time.monotonic()
        if left <= 0 or (cancel_event is not None and cancel_event.is_set()):
            return
        if exhausted_note is not None and os.path.exists(exhausted_note):
            return
        time.sleep(min(pause, left))
        pause = min(pause * 1.5, 0.02)


def run_isolated(fn: Callable[..., Any], *args: Any, timeout_s: float,
                 cancel_event: threading.Event | None = None, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` in a forked child process group; return its result.

    The child is forked (so ``fn`` may be a lambda or a closure over Lava processes) and calls
    ``os.setsid``: it and every process it starts (Lava's actors, its shared-memory manager) form
    one process group, which is SIGKILLed when the call ends whatever happened. ``fn``'s result must
    be picklable. The child's temporary files (``TMPDIR`` points there) go into a directory of the
    run (``nc-lava-*``) that is removed when the call ends.

    Raises :class:`LavaRunError` (one-line message, ``.traceback_text`` has the child's traceback)
    if ``fn`` raised, the child died or a thread of the run ran out of memory (``exc_type``
    ``"MemoryError"``), :class:`LavaTimeoutError` if ``timeout_s`` seconds passed,
    :class:`LavaCancelledError` if another thread set ``cancel_event`` first. Safe to call from
    several threads at once (the forks are serialised by :data:`FORK_LOCK`).
    """
    if timeout_s is None or timeout_s <= 0:
        raise ValueError(f"run_isolated needs a positive timeout_s, got {timeout_s!r}")
    ctx = multiprocessing.get_context("fork")
    pgid = run_dir = proc = None
    try:
        run_dir = tempfile.mkdtemp(prefix="nc-lava-")
        path = os.path.join(run_dir, _RESULT_FILE)
        exhausted_note = os.path.join(run_dir, _EXHAUSTED_NOTE)
        proc = ctx.Process(target=_child_main, args=(run_dir, fn, args, kwargs, os.getpid()),
                           name=f"lava-isolated-{getattr(fn, '__name__', 'fn')}", daemon=False)
        with FORK_LOCK:
            proc.start()
        pgid = proc.pid
        _wait_exit(proc, timeout_s, cancel_event, exhausted_note)
        if proc.exitcode is None and cancel_event is not None and cancel_event.is_set():
            raise LavaCancelledError("the Lava run was cancelled and killed")
        if proc.exitcode is None and os.path.exists(exhausted_note):
            with open(exhausted_note, errors="replace") as fh:
                first = fh.readline().strip()
            raise LavaRunError(f"the Lava run ran out of memory ({first}) and was killed",
                               exc_type="MemoryError")
        if proc.exitcode is None:
            raise LavaTimeoutError(
                f"Lava run exceeded its time limit of {timeout_s:g} s and was killed",
                timeout_s=timeout_s)
        _kill_group(pgid)  # leftovers of a run that returned without stopping Lava
        try:
            with open(path, "rb") as fh:
                payload = pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError):
            payload = None
        if payload is None:
            code = proc.exitcode
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise LavaRunError(f"the isolated Lava child died ({how}) without a result",
                               exc_type="ChildDied")
        if payload[0] == "ok":
            return payload[1]
        _, exc_type, message, tb = payload
        raise LavaRunError(message, traceback_text=tb, exc_type=exc_type)
    finally:
        if pgid is not None:
            if proc.exitcode is None:
                try:
                    os.kill(pgid, signal.SIGKILL)  # in case it had not reached setsid yet
                except ProcessLookupError:
                    pass
            _kill_group(pgid)
            proc.join(5.0)
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
        try:
            if proc is not None:
                proc.close()
        except ValueError:  # pragma: no cover - still running after SIGKILL: leave it
            pass


# --------------------------------------------------------------------------------------------------
# record
# --------------------------------------------------------------------------------------------------

def fixed_pt_run_cfg(extra_map: Mapping | None = None):
    """``Loihi2SimCfg(select_tag='fixed_pt')`` that also accepts the untagged Extractor model.

    The Extractor has two ProcessModels (Loihi and Async protocol), neither tagged, so a plain
    ``select_tag='fixed_pt'`` config rejects it; it is mapped explicitly here.
    """
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel

    mapping = {Extractor: PyLoihiExtractorModel}
    if extra_map:
        mapping.update(extra_map)
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=mapping)


def _actor_failure(runtime) -> LavaRunError | None:
    """A LavaRunError describing the first failed Lava actor, or None if all are running."""
    infra = getattr(runtime, "_messaging_infrastructure", None)
    actors = list(getattr(infra, "actors", []) or [])
    for actor in actors:
        try:
            exc_info = actor.exception
        except (OSError, EOFError, ValueError):
            exc_info = None
        if exc_info:
            exc, tb = exc_info
            what = (f"ran out of memory ({_one_line(exc)})" if _is_exhaustion(exc)
                    else f"raised {_one_line(exc)}")
            return LavaRunError(f"a Lava ProcessModel {what}",
                                traceback_text=str(tb), exc_type=type(exc).__name__)
    for actor in actors:
        try:
            alive = actor.is_alive()
        except (ValueError, AssertionError):
            continue
        if not alive:
            return LavaRunError(f"a Lava actor process ({actor.name}) exited during the run "
                                f"with code {actor.exitcode}", exc_type="ActorDied")
    return None


def _wait_checked(runtime, poll_s: float = 0.001) -> None:
    """Wait for a non-blocking RunSteps to finish, raising LavaRunError if an actor fails."""
    ports = list(runtime.service_to_runtime)
    while True:
        failure = _actor_failure(runtime)
        if failure is not None:
            raise failure
        if all(port.probe() for port in ports):
            break
        time.sleep(poll_s)
    try:
        runtime.wait()
    except RuntimeError as exc:
        failure = _actor_failure(runtime)
        if failure is not None:
            raise failure from exc
        raise LavaRunError(f"the Lava runtime reported: {_one_line(exc)}",
                           traceback_text=traceback.format_exc(), exc_type=type(exc).__name__)


def record(net_procs: list, probes: Mapping[str, Any], num_steps: int, chunk: int = 256, *,
           dtype: Any = np.int32, exception_proc_model_map: Mapping | None = None,
           timings: dict | None = None,
           on_chunk: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Run a Lava network for ``num_steps`` steps and return what the probed OutPorts sent.

    ``net_procs``: the network's processes (all must be connected to each other: the runtime is
    built from the first one); ``probes``: ``{name: OutPort}`` (a reshaped / flattened port is
    fine). Returns ``{name: array (num_steps, *port.shape)}`` of ``dtype`` (int32 by default), row
    ``t`` being what the port sent at Lava time step ``t + 1``. Raises :class:`LavaRunError` if a
    ProcessModel raises. Call it inside :func:`run_isolated` only.

    ``exception_proc_model_map`` adds ``{Process class: ProcessModel class}`` choices to the run
    config; ``timings``, if given, receives ``build_s`` (compile + runtime start) and ``run_s``
    (all steps, draining included) in seconds; ``on_chunk``, if given, is called with the number
    of steps done after each chunk (progress reports).
    """
    from lava.magma.compiler.compiler_graphs import find_processes
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.extractor import Extractor

    if num_steps <= 0 or chunk <= 0:
        raise ValueError(f"num_steps and chunk must be positive, got {num_steps}, {chunk}")
    if not net_procs and not probes:
        raise ValueError("record needs at least one process or probe")
    chunk = min(chunk, num_steps)
    taps: dict[str, Extractor] = {}
    for name, port in probes.items():
        ex = Extractor(shape=tuple(port.shape), buffer_size=chunk)
        port.connect(ex.in_port)
        taps[name] = ex
    anchor = net_procs[0] if net_procs else next(iter(taps.values()))
    # Lava compiles only what is connected to the anchor; check before building anything, since
    # a runtime that was initialised but never started cannot be stopped (stop() hangs).
    connected = {id(p) for p in find_processes(anchor)}
    stray = [p for p in list(net_procs) + list(taps.values()) if id(p) not in connected]
    if stray:
        raise ValueError("record: these processes are not connected to the first one (run each "
                         "connected component in its own record call): "
                         + ", ".join(p.name for p in stray))
    out = {name: np.zeros((num_steps, *ex.in_port.shape), dtype=np.float64)
           for name, ex in taps.items()}

    t0 = time.perf_counter()
    anchor.create_runtime(run_cfg=fixed_pt_run_cfg(exception_proc_model_map))
    runtime = anchor.runtime
    t1 = time.perf_counter()
    failed = False
    try:
        done = 0
        while done < num_steps:
            n = min(chunk, num_steps - done)
            runtime.start(RunSteps(num_steps=n, blocking=False))
            _wait_checked(runtime)
            for name, ex in taps.items():
                buf = out[name]
                for t in range(done, done + n):
                    buf[t] = ex.receive()
            done += n
            if on_chunk is not None:
                on_chunk(done)
        if timings is not None:
            timings["build_s"] = t1 - t0
            timings["run_s"] = time.perf_counter() - t1
    except LavaRunError:
        failed = True  # the runtime is deadlocked: stopping it would hang
        raise
    finally:
        # After a ProcessModel failure the runtime is deadlocked, and a runtime that never started
        # joins actors that wait forever: in both cases stop() would hang. The isolated child that
        # runs this is killed with its whole process group instead.
        if not failed and getattr(runtime, "_is_started", False):
            runtime.stop()
    result = {}
    for name, arr in out.items():
        cast = arr.astype(dtype)
        if not np.array_equal(cast, arr):
            raise ValueError(f"record: probe {name!r} has values that do not fit {np.dtype(dtype)}")
        result[name] = cast
    return result
