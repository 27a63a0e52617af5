"""neurocompile: compile trained spiking transformers to a bit-accurate Loihi 2 simulation.

Library entry points (the CLI is a thin layer over these)::

    import neurocompile
    compiled = neurocompile.compile_checkpoint("spikformer_digits", target="loihi2")
    compiled.save("out/bundle")                      # what `neurocompile export` writes
    # a live snnTorch / SpikingJelly module and a time-major example input (T, batch, ...):
    compiled = neurocompile.compile(net, example_input, target="loihi2")
    compiled = neurocompile.compile_nir("model.nir", steps=4)   # NIR from another tool
    bundle = neurocompile.read_bundle("out/bundle")
"""
from importlib.metadata import PackageNotFoundError, version

from .bundle import Bundle, read_bundle, write_bundle
from .compiler import Compiled, ImportedModel, compile, compile_checkpoint
from .errors import NeurocompileError
from .frontend.nir_import import compile_nir, import_nir

try:
    __version__ = version("neurocompile")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["compile", "compile_checkpoint", "compile_nir", "import_nir", "Compiled", "ImportedModel", "write_bundle", "read_bundle", "Bundle",
           "NeurocompileError", "__version__"]
