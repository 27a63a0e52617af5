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
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

#: public name -> the module that defines it, imported on first use (PEP 562): `import
#: neurocompile.cli` stays fast (no torch, Lava or nir), so the command line answers Ctrl-C
#: and --help at once
_LAZY = {
    "Bundle": "bundle", "read_bundle": "bundle", "write_bundle": "bundle",
    "Compiled": "compiler", "ImportedModel": "compiler", "check": "compiler",
    "compile": "compiler", "compile_checkpoint": "compiler",
    "NeurocompileError": "errors",
    "compile_nir": "frontend.nir_import", "import_nir": "frontend.nir_import",
    "simulate": "verification", "verify": "verification",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    try:  # a submodule: neurocompile.ir, neurocompile.passes, ...
        return import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


try:
    __version__ = version("neurocompile")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["compile", "check", "compile_checkpoint", "compile_nir", "import_nir", "Compiled",
           "ImportedModel", "write_bundle", "read_bundle", "Bundle", "NeurocompileError",
           "verify", "simulate", "__version__"]
