"""Property-based: >= 1,000 generated bad inputs through every loader, in the normal test run.

Each test feeds one kind of bad input (see ``badinputs.py``) to its loader; the only acceptable
outcomes are a successful load or a ``NeurocompileError`` whose one-line message names the file.
The examples are derandomized (the same every run); ``bench/fuzz_loaders.py`` runs the same
generators for longer with fresh randomness.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

import badinputs as bad

#: examples per target in the normal run; their sum is the budget checked at the end
BUDGET = {
    "checkpoint bytes": 170,
    "zip archives": 100,
    "checkpoint dicts": 200,
    "nir bytes": 50,
    "nir metadata": 170,
    "target files": 150,
    "npy inputs": 150,
    "bundle manifests": 60,
    "cli arguments": 60,
}
assert sum(BUDGET.values()) >= 1000


def _settings(name: str):
    return settings(max_examples=BUDGET[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _fuzz(name: str):
    target = next(t for t in bad.TARGETS if t.name == name)

    @pytest.mark.timeout(120)
    @_settings(name)
    @given(example=target.strategy())
    def test(workdir, example):
        target.check(workdir, example)

    test.__name__ = f"test_{name.replace(' ', '_')}"
    return test


test_checkpoint_bytes = _fuzz("checkpoint bytes")
test_zip_archives = _fuzz("zip archives")
test_checkpoint_dicts = _fuzz("checkpoint dicts")
test_nir_bytes = _fuzz("nir bytes")
test_nir_metadata = _fuzz("nir metadata")
test_target_files = _fuzz("target files")
test_npy_inputs = _fuzz("npy inputs")
test_bundle_manifests = _fuzz("bundle manifests")
test_cli_arguments = _fuzz("cli arguments")


def test_at_least_1000_bad_inputs_were_tried():
    """Runs last in this module: the generators really produced the budgeted inputs."""
    if set(bad.TRIED) != set(BUDGET):
        pytest.skip("only part of the fuzz module ran (e.g. -k); nothing to count")
    total = sum(bad.TRIED.values())
    print(f"\n{total} generated bad inputs: " + ", ".join(f"{k} {v}" for k, v in
                                                         bad.TRIED.items()))
    assert total >= 1000, dict(bad.TRIED)
