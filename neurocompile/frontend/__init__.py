"""Frontend: load checkpoints safely and convert PyTorch modules into the float IR graph."""
from .checkpoint import LoadedModel, load_checkpoint
from .spikformer import convert_spikformer

__all__ = ["LoadedModel", "load_checkpoint", "convert_spikformer", "to_graph"]


def to_graph(loaded: LoadedModel):
    """The float IR graph of a loaded model (dispatch on its architecture), proved against the
    model's own forward (``zoo_proof``)."""
    from ..errors import UnsupportedModelError

    converters = {"spikformer": convert_spikformer}
    if loaded.architecture not in converters:
        raise UnsupportedModelError(
            f"architecture {loaded.architecture!r} has no converter; supported: "
            f"{', '.join(sorted(converters))}")
    from .zoo_proof import prove_zoo

    from .modules import record_module_types

    graph = converters[loaded.architecture](loaded.model)
    prove_zoo(loaded.model, graph)
    return record_module_types(graph, loaded.model)
