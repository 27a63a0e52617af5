"""neurocompile: compile trained spiking transformers to a bit-accurate Loihi 2 simulation.

Library entry points (the CLI is a thin layer over these)::

    from neurocompile import compile_checkpoint, write_bundle, read_bundle
    compiled = compile_checkpoint("spikformer_digits", target="loihi2")
    write_bundle(compiled, "out/bundle")
"""
from importlib.metadata import PackageNotFoundError, version

from .bundle import Bundle, read_bundle, write_bundle
from .compiler import Compiled, compile_checkpoint
from .errors import NeurocompileError

try:
    __version__ = version("neurocompile")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["compile_checkpoint", "Compiled", "write_bundle", "read_bundle", "Bundle",
           "NeurocompileError", "__version__"]
