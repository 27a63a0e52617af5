"""run_isolated / record: every Lava run ends, within its time limit, leaving no process behind."""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from neurocompile.backends.lava.runtime import (
    LavaError, LavaRunError, LavaTimeoutError, group_members, record, run_isolated,
)

# A tiny process whose model raises (or blocks) at a chosen time step. It lives in its own temporary
# folder because Lava's compiler imports every .py file next to a process's module.
FAILING_MODULE = textwrap.dedent('''
    import os, time
    import numpy as np
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, OutPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


    class Faulty(AbstractProcess):
        def __init__(self, *, shape, at_step, mode, pid_file):
            super().__init__(shape=shape, at_step=at_step, mode=mode, pid_file=pid_file)
            self.s_in = InPort(shape=shape)
            self.s_out = OutPort(shape=shape)


    @implements(proc=Faulty, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyFaultyModel(PyLoihiProcessModel):
        s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

        def run_spk(self):
            x = self.s_in.recv()
            if self.time_step == self.proc_params["at_step"]:
                with open(self.proc_params["pid_file"], "a") as fh:
                    fh.write(f"{os.getpid()}\\n")
                if self.proc_params["mode"] == "raise":
                    raise ValueError(f"faulty model gave up at step {self.time_step}")
                time.sleep(3600)
            self.s_out.send(x)
''')


@pytest.fixture()
def faulty_dir(tmp_path):
    folder = tmp_path / "faulty_proc"
    folder.mkdir()
    (folder / "faulty_lava_proc.py").write_text(FAILING_MODULE)
    return str(folder)


def _children(pid: int | None = None) -> set[int]:
    """Pids of the live (non-zombie) direct children of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    out = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rfind(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(name))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return False
    return data[data.rfind(")") + 2:].split()[0] != "Z"


def _wait_dead(pids, timeout=5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.02)
    return [p for p in pids if _alive(p)]


def _faulty_net(folder: str, mode: str, pid_file: str, steps: int = 10):
    sys.path.insert(0, folder)
    faulty = importlib.import_module("faulty_lava_proc")
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset

    src = RingBuffer(data=np.ones((2, 3, steps), np.int32))
    bad = faulty.Faulty(shape=(2, 3), at_step=3, mode=mode, pid_file=pid_file)
    lif = LIFReset(shape=(2, 3), du=0, dv=0, vth=1, reset_interval=100)
    src.s_out.connect(bad.s_in)
    bad.s_out.connect(lif.a_in)
    return record([src, bad, lif], {"s": lif.s_out}, num_steps=steps)


# --------------------------------------------------------------------------------------------------

def test_exception_hierarchy():
    assert issubclass(LavaRunError, LavaError) and issubclass(LavaTimeoutError, LavaError)
    assert issubclass(LavaError, RuntimeError)


def test_returns_large_results_and_passes_arguments():
    before = _children()

    def fn(n, *, scale):
        return {"big": np.arange(n, dtype=np.int32) * scale, "pid": os.getpid()}

    out = run_isolated(fn, 3_000_000, scale=2, timeout_s=30)  # 12 MB back through the temp file
    assert out["big"].shape == (3_000_000,) and out["big"][-1] == 5_999_998
    assert out["pid"] != os.getpid()
    assert _children() == before


def test_plain_exception_becomes_lava_run_error():
    def boom():
        raise ValueError("no such layer\nsecond line")

    with pytest.raises(LavaRunError) as info:
        run_isolated(boom, timeout_s=30)
    err = info.value
    assert str(err) == "ValueError: no such layer"  # one line
    assert err.exc_type == "ValueError"
    assert "Traceback" in err.traceback_text and "boom" in err.traceback_text


def test_unpicklable_result_and_dying_child():
    with pytest.raises(LavaRunError, match="could not be sent back"):
        run_isolated(lambda: (lambda: 1), timeout_s=30)
    with pytest.raises(LavaRunError, match="signal 9"):
        run_isolated(lambda: os.kill(os.getpid(), signal.SIGKILL), timeout_s=30)
    with pytest.raises(ValueError):
        run_isolated(lambda: 1, timeout_s=0)


def test_timeout_kills_the_whole_process_group(tmp_path):
    before = _children()
    pid_file = tmp_path / "pids"

    def sleeper():
        kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
                for _ in range(2)]
        pid_file.write_text(" ".join(str(k.pid) for k in kids + []) + f" {os.getpid()}")
        time.sleep(600)

    t0 = time.monotonic()
    with pytest.raises(LavaTimeoutError, match="time limit of 2 s") as info:
        run_isolated(sleeper, timeout_s=2)
    assert info.value.timeout_s == 2
    assert time.monotonic() - t0 < 10
    pids = [int(p) for p in pid_file.read_text().split()]
    assert _wait_dead(pids) == []  # the grandchildren died with the child
    assert group_members(pids[-1]) == []
    assert _children() == before


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_exception_in_process_model_is_reported_not_hung(faulty_dir, tmp_path):
    before = _children()
    pid_file = str(tmp_path / "pids")
    t0 = time.monotonic()
    with pytest.raises(LavaRunError) as info:
        run_isolated(_faulty_net, faulty_dir, "raise", pid_file, timeout_s=60)
    elapsed = time.monotonic() - t0
    err = info.value
    assert "ValueError: faulty model gave up at step 3" in str(err)
    assert err.exc_type == "ValueError"
    assert "run_spk" in err.traceback_text  # the ProcessModel's own traceback
    assert elapsed < 30, f"took {elapsed:.1f} s: the failure was not detected, the run timed out"
    actor = int(open(pid_file).read().split()[0])
    assert _wait_dead([actor]) == []
    assert _children() == before


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_deadlocked_lava_run_times_out_and_its_actors_die(faulty_dir, tmp_path):
    before = _children()
    pid_file = str(tmp_path / "pids")
    with pytest.raises(LavaTimeoutError):
        run_isolated(_faulty_net, faulty_dir, "block", pid_file, timeout_s=8)
    actor = int(open(pid_file).read().split()[0])
    assert _wait_dead([actor]) == []
    assert _children() == before


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_run_left_unstopped_still_returns_and_is_cleaned_up():
    """A fn that never stops its Lava runtime would hang a normal interpreter at exit."""
    before = _children()

    def unstopped():
        from lava.magma.core.run_conditions import RunSteps
        from lava.proc.io.source import RingBuffer
        from lava.proc.lif.process import LIF
        from neurocompile.backends.lava.runtime import fixed_pt_run_cfg

        src = RingBuffer(data=np.ones((4, 5), np.int32))
        lif = LIF(shape=(4,), du=0, dv=0, vth=1)
        src.s_out.connect(lif.a_in)
        src.run(condition=RunSteps(num_steps=5), run_cfg=fixed_pt_run_cfg())
        return [a.pid for a in src.runtime._messaging_infrastructure.actors]

    t0 = time.monotonic()
    actors = run_isolated(unstopped, timeout_s=60)
    assert time.monotonic() - t0 < 30
    assert len(actors) >= 3
    assert _wait_dead(actors) == []
    assert _children() == before


@pytest.mark.lava
@pytest.mark.timeout(120)
def test_record_chunks_are_aligned_and_checks_connectivity():
    rng = np.random.default_rng(0)
    data = rng.integers(-100, 100, size=(3, 2, 11)).astype(np.int32)

    def run():
        from lava.proc.io.source import RingBuffer

        src = RingBuffer(data=data)
        return record([src], {"x": src.s_out}, num_steps=11, chunk=4, dtype=np.int8)

    got = run_isolated(run, timeout_s=60)["x"]
    assert got.dtype == np.int8 and got.shape == (11, 3, 2)
    assert np.array_equal(got, np.moveaxis(data, -1, 0))

    def disconnected():
        from lava.proc.io.source import RingBuffer
        from lava.proc.lif.process import LIF

        src = RingBuffer(data=data)
        lone = LIF(shape=(3,), name="lone_lif")
        return record([src, lone], {"x": src.s_out}, num_steps=3)

    with pytest.raises(LavaRunError, match="not connected.*lone_lif") as info:
        run_isolated(disconnected, timeout_s=60)
    assert info.value.exc_type == "ValueError"
