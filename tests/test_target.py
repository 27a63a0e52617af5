import pytest

from neurocompile import fixedpoint
from neurocompile.errors import NeurocompileError
from neurocompile.target import available_targets, load_target


def test_loihi2_matches_the_arithmetic_module():
    t = load_target("loihi2")
    assert t.state_bits == fixedpoint.STATE_BITS
    assert 1 << t.decay_bits == fixedpoint.DECAY_UNITY
    assert t.activation_shift == fixedpoint.ACT_SHIFT
    assert t.default_energy_model == "loihi2"   # the calibrated per-event model
    assert t.energy_models["sop77"]["joules_per_sop"] == 77e-15
    assert "loihi2" in available_targets()


def test_unknown_target_lists_the_available_ones():
    with pytest.raises(NeurocompileError, match="unknown target 'loihi9'; available: .*loihi2"):
        load_target("loihi9")


@pytest.mark.parametrize("text, message", [
    ("name = ", "not valid TOML"),
    ("name = 'x'\nbackend = 'lava'\n", "missing key"),
])
def test_bad_target_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(NeurocompileError, match=message):
        load_target(str(path))


def test_wrong_typed_value(tmp_path):
    from importlib import resources

    text = (resources.files("neurocompile.targets") / "loihi2.toml").read_text()
    path = tmp_path / "t.toml"
    path.write_text(text.replace("bits = 8 ", "bits = 'eight' "))
    with pytest.raises(NeurocompileError, match="wrong type"):
        load_target(str(path))
