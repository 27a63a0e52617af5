"""Long fuzz run of every neurocompile loader with generated bad inputs.

The same generators and the same rule as ``tests/robustness/test_fuzz_loaders.py`` (which runs a
fixed budget of about 1,100 derandomized examples in the normal test run), with fresh randomness
and as many examples as you like:

    .venv/bin/python bench/fuzz_loaders.py --examples 20000 --seconds 600
    .venv/bin/python bench/fuzz_loaders.py --targets "npy inputs" "target files" --seconds 60

The rule: a loader either loads the input (it happened to be valid) or raises NeurocompileError
with a one-line message naming the file; anything else (another exception, a hang longer than
--example-timeout) is a failure. The targets take turns in chunks of --chunk examples until
--examples inputs were tried or --seconds passed. Prints how many inputs were tried (per target)
and every failure with its (shrunk) input; exits 1 if there was any.
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "robustness"), str(ROOT / "tests")]

import badinputs as bad  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402


class ExampleTimeout(Exception):
    """One input took longer than --example-timeout: the loader (probably) hangs."""


def _alarm(signum, frame):
    raise ExampleTimeout("the loader did not answer within the per-input time limit")


def run_chunk(target, workdir: Path, examples: int, example_timeout: float, rng_seed) -> None:
    """``examples`` fresh random inputs for ``target``; raises on the first (shrunk) failure."""

    def body(example):
        signal.setitimer(signal.ITIMER_REAL, example_timeout)
        try:
            target.check(workdir, example)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    test = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), print_blob=False)(
        given(target.strategy())(body))
    if rng_seed is not None:
        test = seed(rng_seed)(test)
    test()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000,
                        help="stop after this many inputs in all (default 10000)")
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="stop after this many seconds (default 300)")
    parser.add_argument("--chunk", type=int, default=50,
                        help="inputs per target per turn (default 50)")
    parser.add_argument("--example-timeout", type=float, default=30.0,
                        help="seconds one input may take before it counts as a hang (default 30)")
    parser.add_argument("--targets", nargs="+", choices=[t.name for t in bad.TARGETS],
                        metavar="TARGET", help="fuzz only these targets (default: all of "
                        + ", ".join(repr(t.name) for t in bad.TARGETS) + ")")
    parser.add_argument("--seed", type=int, default=None,
                        help="hypothesis seed (default: fresh randomness)")
    parser.add_argument("--verbose", action="store_true", help="print a line after each chunk")
    args = parser.parse_args(argv)
    if args.examples < 1 or args.seconds <= 0 or args.chunk < 1 or args.example_timeout <= 0:
        parser.error("--examples, --seconds, --chunk and --example-timeout must be positive")

    targets = [t for t in bad.TARGETS if not args.targets or t.name in args.targets]
    signal.signal(signal.SIGALRM, _alarm)
    print("building the small valid inputs to damage ...", flush=True)
    bad.tiny_bundle(), bad.tiny_nir_bytes()
    failures: list[tuple[str, str]] = []
    start = time.monotonic()
    turn = 0
    with tempfile.TemporaryDirectory(prefix="neurocompile-fuzz-") as tmp:
        workdir = Path(tmp)
        while True:
            tried = sum(bad.TRIED.values())
            if tried >= args.examples or time.monotonic() - start >= args.seconds:
                break
            target = targets[turn % len(targets)]
            n = min(args.chunk, args.examples - tried)
            chunk_seed = None if args.seed is None else args.seed + turn
            turn += 1
            if args.verbose:
                print(f"[{time.monotonic() - start:6.1f} s] {target.name}: {n} inputs "
                      f"(tried so far: {tried})", flush=True)
            try:
                run_chunk(target, workdir, n, args.example_timeout, chunk_seed)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                break
            except BaseException as exc:  # noqa: BLE001 - report every failure, keep going
                notes = "\n    ".join(getattr(exc, "__notes__", []))
                failures.append((target.name, f"{type(exc).__name__}: {exc}\n    {notes}"))
                print(f"FAILURE in {target.name}: {type(exc).__name__}: {exc}", flush=True)
    elapsed = time.monotonic() - start
    total = sum(bad.TRIED.values())
    print(f"\n{total} bad inputs tried in {elapsed:.0f} s "
          f"({total / max(elapsed, 1e-9):.0f}/s):")
    for target in targets:
        print(f"  {target.name:<18} {bad.TRIED[target.name]}")
    if failures:
        print(f"\n{len(failures)} failure(s):")
        for name, text in failures:
            print(f"- {name}: {text}")
        return 1
    print("no failures: every input was loaded or refused with one clear line naming the file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
