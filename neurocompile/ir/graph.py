"""The IR graph: named nodes in topological order, each an op (plain data) with ordered inputs.

Like torch.fx, the graph is a small closed structure; analyses write into ``node.meta`` and passes
are plain functions from graph to graph. Inputs are ordered because some ops are not symmetric in
them (attention takes q, k, v); where an op sums its inputs (``Add``) the order does not matter.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import GraphError
from .ops import Op
from .structure import Delay


@dataclass
class Node:
    name: str
    op: Op
    inputs: list[str]
    meta: dict = field(default_factory=dict)


class Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.output: str | None = None
        #: graph-level facts: architecture, config, number of time steps
        self.meta: dict = {}

    def add(self, name: str, op: Op, inputs: list[str] | tuple[str, ...] = ()) -> str:
        if name in self.nodes:
            raise GraphError(f"node {name!r} is defined twice")
        for src in inputs:
            if src not in self.nodes:
                raise GraphError(f"node {name!r} reads {src!r}, which is not defined before it")
        self.nodes[name] = Node(name, op, list(inputs))
        return name

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes.values()))

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __len__(self) -> int:
        return len(self.nodes)

    def users(self, name: str) -> list[Node]:
        """The nodes that read ``name``: through their inputs, or one step later (a Delay)."""
        return [n for n in self.nodes.values()
                if name in n.inputs or getattr(n.op, "source", None) == name]

    def reads(self, node: Node) -> list[str]:
        """What ``node`` reads: its inputs, or a Delay's (later) source."""
        return [node.op.source] if isinstance(node.op, Delay) else node.inputs

    def copy(self) -> "Graph":
        return copy.deepcopy(self)

    def rebuild(self, nodes: list[Node], output: str) -> "Graph":
        """A new graph from a node list (checked for order and dangling references)."""
        graph = Graph()
        for node in nodes:
            graph.add(node.name, node.op, node.inputs)
            graph.nodes[node.name].meta = dict(node.meta)
        graph.output = output
        graph.meta = copy.deepcopy(self.meta)
        graph.validate()
        return graph

    def pruned(self) -> "Graph":
        """The graph without the nodes its output does not read."""
        live, stack = set(), [self.output]
        while stack:
            name = stack.pop()
            if name not in live:
                live.add(name)
                stack.extend(self.reads(self[name]))
        return self.rebuild([n for n in self if n.name in live], self.output)

    def validate(self) -> None:
        """Check references, arity and shapes (shape rules live on each op)."""
        if self.output not in self.nodes:
            raise GraphError(f"graph output {self.output!r} is not a node")
        shapes: dict[str, tuple[int, ...]] = {}
        for node in self.nodes.values():
            arity = node.op.arity
            if arity is not None and len(node.inputs) != arity:
                raise GraphError(f"{node.name}: {type(node.op).__name__} takes {arity} inputs, "
                                 f"got {len(node.inputs)}")
            try:
                shapes[node.name] = node.op.output_shape([shapes[i] for i in node.inputs])
            except ValueError as exc:
                raise GraphError(f"{node.name}: {exc}") from exc
        for node in self.nodes.values():
            if isinstance(node.op, Delay):
                source = self.nodes.get(node.op.source)
                if source is None or not source.op.spiking:
                    raise GraphError(f"{node.name}: delays {node.op.source!r}, which is not a "
                                     "spiking node (recurrent connections carry spikes)")
                if shapes[source.name] != node.op.shape:
                    raise GraphError(f"{node.name}: delays {source.name} of shape "
                                     f"{shapes[source.name]} as {node.op.shape}")
        for name, shape in shapes.items():
            self.nodes[name].meta["shape"] = shape

    def shape(self, name: str) -> tuple[int, ...]:
        if "shape" not in self.nodes[name].meta:
            self.validate()
        return self.nodes[name].meta["shape"]

    def summary(self) -> str:
        lines = []
        for node in self.nodes.values():
            shape = node.meta.get("shape", "?")
            reads = ", ".join(node.inputs) if node.inputs or not isinstance(node.op, Delay) \
                else f"{node.op.source} (previous step)"
            lines.append(f"{node.name:<28} {type(node.op).__name__:<14} {str(shape):<16} "
                         f"<- {reads}")
        return "\n".join(lines)
