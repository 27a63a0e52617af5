"""neurocompile: compile trained spiking transformers to a bit-accurate Loihi 2 simulation.

Library entry points (the CLI is a thin layer over these)::

    import neurocompile
    compiled = neurocompile.compile_checkpoint("spikformer_digits", target="loihi2")
    compiled.save("out/bundle")                      # what `neurocompile export` writes
    # a live module (its forward is traced and proved) and the input its forward takes:
    compiled = neurocompile.compile(net, example_input, target="loihi2")
    problems = neurocompile.check(net, example_input)   # every incompatibility at once
    compiled = neurocompile.compile_nir("model.nir", steps=4)   # NIR from another tool
    bundle = neurocompile.read_bundle("out/bundle")
    result = neurocompile.verify(bundle, loader)     # arrays, tensors or (x, y) batches
"""
from importlib.metadata import PackageNotFoundError, version

from .bundle import Bundle, read_bundle, write_bundle
from .compiler import Compiled, ImportedModel, check, compile, compile_checkpoint
from .errors import NeurocompileError
from .frontend.nir_import import compile_nir, import_nir
from .verification import simulate, verify

try:
    __version__ = version("neurocompile")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["compile", "check", "compile_checkpoint", "compile_nir", "import_nir", "Compiled", "ImportedModel", "write_bundle", "read_bundle", "Bundle",
           "NeurocompileError", "verify", "simulate", "__version__"]
