"""The VCC graph: concept nodes per layer, a class node, ITCAV edges; JSON round-trip; metrics (5.4.3)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.jsonsafe import nan_to_null, null_to_nan

SCHEMA = "vcc-graph/1"
CLASS_LAYER = "class"


_num = nan_to_null
_unnum = null_to_nan


@dataclass
class Node:
    """A concept (``kind="concept"``) or the class output (``kind="class"``, layer :data:`CLASS_LAYER`).

    ``index`` is the concept's rank in its layer (0 the largest cluster; the class index for the class
    node); ``size`` the number of segments in its cluster; ``members`` segment ids nearest the
    centroid first (at most ``max_members``); ``exemplars`` the first few of them.
    """

    id: str
    layer: str
    index: int
    size: int
    members: list[int] = field(default_factory=list)
    exemplars: list[int] = field(default_factory=list)
    kind: str = "concept"
    label: str | None = None


@dataclass
class Edge:
    """ITCAV edge from a shallower ``source`` to a deeper ``target`` concept (or the class node).

    ``weight`` is the mean over random sets of ``values`` (one ITCAV value per random set);
    ``random_values`` the pseudo-concept's values against the same sets; ``p_value`` their paired
    two-sided t-test; ``significant`` whether the edge survives it (always true with the test off).
    """

    source: str
    target: str
    weight: float
    p_value: float
    significant: bool
    values: list[float] = field(default_factory=list)
    random_values: list[float] = field(default_factory=list)

    def __eq__(self, other: object) -> bool:  # NaN p-values compare equal
        if not isinstance(other, Edge):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        return a == b

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "weight": _num(self.weight),
                "p_value": _num(self.p_value), "significant": bool(self.significant),
                "values": [_num(v) for v in self.values], "random_values": [_num(v) for v in self.random_values]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Edge:
        return cls(d["source"], d["target"], _unnum(d["weight"]), _unnum(d["p_value"]), bool(d["significant"]),
                   [_unnum(v) for v in d.get("values", [])], [_unnum(v) for v in d.get("random_values", [])])


METRIC_GROUPINGS = ("source", "target")


@dataclass
class LayerMetrics:
    """Graph metrics of one layer (5.4.3), over its significant edges.

    ``n_edges`` and ``branching_factor``: the significant edges pointing into the layer, and their mean
    number per concept (NaN at the first layer). ``mean_edge_weight`` and ``edge_weight_variance``
    (population variance) over the ``weight_edges`` significant edges grouped at this layer by
    ``grouped_by``: ``source`` (the default, as the released analysis: the edges leaving the layer,
    so the class node has none) or ``target`` (the edges pointing into it); NaN when there are none.
    """

    layer: str
    n_concepts: int
    n_edges: int
    branching_factor: float
    mean_edge_weight: float
    edge_weight_variance: float
    weight_edges: int = 0
    grouped_by: str = "source"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("branching_factor", "mean_edge_weight", "edge_weight_variance"):
            d[k] = _num(d[k])
        return d


@dataclass
class VCCGraph:
    """A Visual Concept Connectome for one class: ``layers`` shallow to deep (the class node above them)."""

    layers: list[str]
    class_index: int
    class_name: str | None
    nodes: list[Node]
    edges: list[Edge]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def class_id(self) -> str:
        return class_node_id(self.class_index)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def layer_nodes(self, layer: str) -> list[Node]:
        return [n for n in self.nodes if n.layer == layer]

    def kept_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.significant]

    def incoming(self, node_id: str, significant_only: bool = True) -> list[Edge]:
        return [e for e in self.edges if e.target == node_id and (e.significant or not significant_only)]

    def outgoing(self, node_id: str, significant_only: bool = True) -> list[Edge]:
        return [e for e in self.edges if e.source == node_id and (e.significant or not significant_only)]

    def metrics(self, group_by: str = "source") -> list[LayerMetrics]:
        """One row per layer, shallow to deep, then the class node's (:class:`LayerMetrics`); edge-weight
        mean and variance grouped by the edges' ``group_by`` layer (``source`` or ``target``)."""
        if group_by not in METRIC_GROUPINGS:
            raise ValueError(f"group_by must be 'source' or 'target', not {group_by!r}")
        rows = []
        kept = self.kept_edges()
        for layer in [*self.layers, CLASS_LAYER]:
            ids = {n.id for n in self.layer_nodes(layer)}
            incoming = [e.weight for e in kept if e.target in ids]
            w = incoming if group_by == "target" else [e.weight for e in kept if e.source in ids]
            n = len(ids)
            mean = sum(w) / len(w) if w else float("nan")
            var = sum((v - mean) ** 2 for v in w) / len(w) if w else float("nan")
            has_incoming = layer != self.layers[0] if self.layers else False
            bf = len(incoming) / n if n and has_incoming else float("nan")
            rows.append(LayerMetrics(layer, n, len(incoming), bf, mean, var, len(w), group_by))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "layers": list(self.layers), "class_index": int(self.class_index),
                "class_name": self.class_name, "nodes": [asdict(n) for n in self.nodes],
                "edges": [e.to_dict() for e in self.edges], "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VCCGraph:
        """The graph of :meth:`to_dict`; node keys that :class:`Node` does not know are ignored."""
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a VCC graph of schema {SCHEMA}: {d.get('schema')!r}")
        known = {f.name for f in fields(Node)}  # other node keys (a run's ``exemplar_files``) are left out
        nodes = [Node(**{**{k: v for k, v in n.items() if k in known}, "members": [int(i) for i in n["members"]],
                         "exemplars": [int(i) for i in n["exemplars"]]}) for n in d["nodes"]]
        return cls(list(d["layers"]), int(d["class_index"]), d.get("class_name"), nodes,
                   [Edge.from_dict(e) for e in d["edges"]], dict(d.get("meta", {})))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> VCCGraph:
        return cls.from_dict(json.loads(text))


def concept_id(layer: str, index: int) -> str:
    return f"{layer}:{index}"


def class_node_id(class_index: int) -> str:
    return f"{CLASS_LAYER}:{class_index}"
