"""Model zoo (installed as ``neurocompile.zoo``): spiking architectures, their training script and
shipped checkpoints. See ``registry`` for the checkpoint format and ``ZOO`` names."""

# Imported first so that attention kinds defined in their own files (which import spikformer and
# are registered at its end) load in either import order.
from . import spikformer  # noqa: E402,F401
