"""Light shape checks of the JSON files of each run kind, so a malformed file is a RunError, not a KeyError.

A run's files are hash-checked against its manifest, but whoever wrote the manifest chose the hashes: a
file of another shape with a matching hash must still be refused before a page indexes into it. Each
known file name pattern of each kind (:data:`SCHEMAS`) has a small spec of the keys and types that the
dashboard and the precompute jobs that read runs (vcc-debug, rosetta) rely on; keys a reader takes with
``.get`` are optional here, extra keys are allowed. :func:`check` returns ``None`` for a good document
or one sentence naming where it is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class _Bad(Exception):
    """Where a document departs from its spec (``where`` is a path such as ``nodes.3.layer``)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where or 'the document'}: {problem}")


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Spec:
    """A check of one JSON value; raises :class:`_Bad` naming the path."""

    def check(self, value: Any, where: str) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Prim(Spec):
    name: str
    accept: Callable[[Any], bool]

    def check(self, value: Any, where: str) -> None:
        if not self.accept(value):
            raise _Bad(where, f"expected {self.name}, got {_kind_of(value)}")


STR = Prim("a string", lambda v: isinstance(v, str))
INT = Prim("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUM = Prim("a number", lambda v: isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool)
                                                           and abs(v) <= 2**1023))  # readers take float(v)
BOOL = Prim("a boolean", lambda v: isinstance(v, bool))
ANY = Prim("anything", lambda v: True)


@dataclass(frozen=True)
class Opt(Spec):
    """``spec`` or null."""

    spec: Spec

    def check(self, value: Any, where: str) -> None:
        if value is not None:
            self.spec.check(value, where)


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec = ANY

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _Bad(where, f"expected a list, got {_kind_of(value)}")
        for i, v in enumerate(value):
            self.item.check(v, f"{where}.{i}" if where else str(i))


@dataclass(frozen=True)
class MapOf(Spec):
    """An object with any keys, each value matching ``value``."""

    value: Spec = ANY

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(where, f"expected an object, got {_kind_of(value)}")
        for k, v in value.items():
            key = k if re.fullmatch(r"[\w.:/-]{1,60}", k) else repr(k[:40])  # keys come from the run: quoted
            self.value.check(v, f"{where}.{key}" if where else key)


@dataclass(frozen=True)
class Obj(Spec):
    """An object with ``required`` keys; ``optional`` keys are checked when present (extra keys are fine).

    ``rules`` are whole-object checks, each returning None or the problem.
    """

    required: Mapping[str, Spec] = field(default_factory=dict)
    optional: Mapping[str, Spec] = field(default_factory=dict)
    rules: tuple[Callable[[dict[str, Any]], str | None], ...] = ()

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(where, f"expected an object, got {_kind_of(value)}")
        missing = [k for k in self.required if k not in value]
        if missing:
            raise _Bad(where, f"lacks {', '.join(map(repr, missing))}")
        for k, spec in (*self.required.items(), *self.optional.items()):
            if k in value:
                spec.check(value[k], f"{where}.{k}" if where else k)
        for rule in self.rules:
            problem = rule(value)
            if problem:
                raise _Bad(where, problem)


def _same_length(key: str, *others: str, items: str | None = None) -> Callable[[dict[str, Any]], str | None]:
    """Rule: every list ``others`` (of each element of list ``items``, if given) is as long as ``key``."""

    def rule(doc: dict[str, Any]) -> str | None:
        n = len(doc[key])
        for i, rec in enumerate(doc[items] if items else [doc]):
            for o in others:
                if o in rec and isinstance(rec[o], list) and len(rec[o]) != n:
                    where = f"{items}.{i}.{o}" if items else o
                    return f"{where} has {len(rec[o])} values but {key} has {n}"
        return None

    return rule


# -- pieces shared by several kinds -----------------------------------------------------------------------

TOP = ListOf(Obj({"index": INT, "name": ANY, "prob": NUM}))

NODE = Obj({"id": STR, "layer": STR, "index": Opt(INT), "size": INT, "members": ListOf(INT), "exemplars": ListOf(INT)},
           {"kind": STR, "label": Opt(STR), "exemplar_files": ListOf(STR)})
EDGE = Obj({"source": STR, "target": STR, "weight": NUM}, {"p_value": Opt(NUM), "significant": BOOL})


def _graph_refs(graph: dict[str, Any]) -> str | None:
    layers = set(graph["layers"])
    ids = {n["id"] for n in graph["nodes"]}
    for n in graph["nodes"]:
        if n.get("kind") != "class" and n["layer"] not in layers:
            return f"node {n['id']!r} is in layer {n['layer']!r}, which is not among its layers"
        if n.get("kind") != "class" and not isinstance(n.get("index"), int):
            return f"concept node {n['id']!r} has no integer index"
    for e in graph["edges"]:
        if e["source"] not in ids or e["target"] not in ids:
            return f"edge {e['source']!r} -> {e['target']!r} names a node the graph does not have"
    return None


GRAPH = Obj({"layers": ListOf(STR), "nodes": ListOf(NODE), "edges": ListOf(EDGE)},
            {"class_index": INT, "class_name": STR, "meta": MapOf()}, rules=(_graph_refs,))

VCC_CLASS = Obj({"slug": STR, "class_index": INT, "class_name": STR},
                {"dir": Opt(STR), "n_images": INT, "n_augmented": Opt(INT), "layers": ListOf(STR),
                 "n_concepts": MapOf(INT), "selected_by": Opt(STR)})

VIDEO = Obj({"id": STR, "file": STR}, {"label_name": Opt(STR), "predicted_name": Opt(STR)})

SD_LAYER = Obj({"model": STR, "layer": STR, "depth": INT, "n_units": INT, "S_static": Opt(NUM),
                "S_dynamic": Opt(NUM), "pct_static": Opt(NUM), "pct_dynamic": Opt(NUM), "n_static": INT,
                "n_dynamic": INT},  # null: a layer with no live unit has no score
               {"pct_identical": Opt(NUM), "n_joint": INT, "n_residual": INT, "n_dead": INT, "lambda": NUM})


def _concept_videos(doc: dict[str, Any]) -> str | None:
    n = len(doc["videos"])
    for c in doc["concepts"]:
        for r in c["videos"]:
            if not 0 <= r["video"] < n:
                return f"concept {c['id']!r} refers to video {r['video']}, but there are {n}"
    return None


def _debug_vccs(doc: dict[str, Any]) -> str | None:
    for i, im in enumerate(doc["images"]):
        for side in ("vcc_true", "vcc_predicted"):
            if im.get(side) is not None and im[side] not in doc["vccs"]:
                return f"images.{i}.{side} names VCC {im[side]!r}, which is not in vccs"
    return None


SCHEMAS: dict[str, list[tuple[str, Spec]]] = {
    "predictions": [
        ("predictions.json", Obj({"images": ListOf(Obj(
            {"id": STR, "file": STR},
            {"top": TOP, "correct": Opt(BOOL), "label": Opt(INT), "label_name": Opt(STR), "predicted_name": Opt(STR),
             "source": Opt(STR)}))},
            {"model": Obj({}, {"preprocessing": Obj({}, {"input": STR})})})),
        ("layers.json", ListOf(Obj({"layer": STR}, {"shape": Opt(ListOf(INT))}))),
    ],
    "static-dynamic": [
        ("models.json", ListOf(Obj({"label": STR}, {"layers": Opt(ListOf(STR)), "val_accuracy": Opt(NUM)}))),
        ("layers.json", ListOf(SD_LAYER)),
        ("pairs.json", MapOf(ListOf(MapOf()))),
        ("removal.json", Obj(
            {"fractions": ListOf(NUM), "curves": ListOf(Obj(
                {"model": STR, "layer": STR, "static": ListOf(NUM), "dynamic": ListOf(NUM),
                 "random_mean": ListOf(NUM)},
                {"random_std": Opt(ListOf(NUM)), "auc": MapOf(Opt(NUM))}))},
            {"metric": STR, "n_videos": Opt(INT), "seeds": Opt(INT)},
            rules=(_same_length("fractions", "static", "dynamic", "random_mean", "random_std", items="curves"),))),
        ("dynamics.json", Obj({}, {
            "checkpoints": ListOf(Obj({"label": STR, "epoch": INT}, {"val_accuracy": Opt(NUM)})),
            "records": ListOf(Obj({"checkpoint": STR, "epoch": INT, "layer": STR, "n_units": INT, "n_static": INT,
                                   "n_dynamic": INT, "S_static": NUM, "S_dynamic": NUM, "pct_static": NUM,
                                   "pct_dynamic": NUM}))})),
        ("examples.json", ListOf(Obj({"files": MapOf(STR)},
                                     {"video": STR, "caption": STR, "styles": Opt(MapOf(Opt(STR)))}))),
    ],
    "vcc": [
        ("classes.json", ListOf(VCC_CLASS)),
        ("classes/*/class.json", VCC_CLASS),
        ("classes/*/graph.json", GRAPH),
        ("classes/*/metrics.json", ListOf(Obj({"layer": STR}, {
            "n_concepts": Opt(INT), "n_edges": Opt(INT), "branching_factor": Opt(NUM), "mean_edge_weight": Opt(NUM),
            "edge_weight_variance": Opt(NUM)}))),
        ("classes/*/fidelity.json", Obj({}, {
            "enabled": BOOL, "scales": ListOf(NUM), "eps": ListOf(NUM), "metric": STR,
            "layers": MapOf(Obj({}, {"scales": Opt(ListOf(NUM)), "concept": Opt(ListOf()), "random": Opt(ListOf()),
                                     "matched": Opt(ListOf()), "concept_ids": Opt(ListOf()),
                                     "auc": Opt(MapOf())}))})),
        ("classes/*/images.json", ListOf(Obj({"id": STR, "file": STR},
                                             {"top": TOP, "correct": Opt(BOOL), "label_name": Opt(STR)}))),
    ],
    "vcc-debug": [
        ("debug.json", Obj({
            "vccs": MapOf(Obj({"graph": STR, "class_name": STR}, {"class_index": INT, "selected_by": Opt(STR)})),
            "images": ListOf(Obj({
                "n": INT, "id": STR, "file": STR, "segments": STR, "true_name": STR, "predicted": INT,
                "predicted_name": STR, "correct": Opt(BOOL), "top": TOP, "vcc_true": Opt(STR),
                "vcc_predicted": Opt(STR), "share_true": NUM, "activated": MapOf(Opt(MapOf())),
                "paths": MapOf(Opt(ListOf(Obj({"nodes": ListOf(STR)}, {"strength": NUM, "segments": INT})))),
                "layers": ListOf(Obj({"layer": STR, "n_segments": INT, "n_true": INT, "n_predicted": INT,
                                      "area_true": NUM, "area_predicted": NUM}))},
                {"true_class": Opt(INT), "source": Opt(STR)}))},
            rules=(_debug_vccs,))),
        ("vccs/*/graph.json", GRAPH),
    ],
    "vtcd": [
        ("concepts.json", Obj({
            "model": Obj({"label": STR}), "layers": ListOf(STR), "videos": ListOf(VIDEO),
            "units": ListOf(Obj({"index": INT, "layer": STR, "head": INT, "n_concepts": INT,
                                 "importance": Opt(NUM)},  # null: no head masks (--head-masks 0)
                                {"rank": Opt(INT)})),
            "concepts": ListOf(Obj({
                "id": STR, "layer": STR, "head": INT, "unit": INT, "concept": INT, "importance": Opt(NUM),  # null: NaN
                "videos": ListOf(Obj({"video": INT, "coverage": NUM})), "media": ListOf(STR)}))},
            {"feature": STR, "metric": STR}, rules=(_concept_videos,))),
        ("attribution.json", Obj({}, {"fractions": ListOf(NUM), "scopes": ListOf(Obj({"scope": STR}))})),
        ("diagnostics.json", Obj({}, {"blocks": ListOf(Obj({"layer": STR}))})),
        ("ground_truth.json", Obj({}, {"best": Opt(Obj({"id": STR})), "baseline": Opt(MapOf()),
                                       "layers": ListOf(MapOf()), "concepts": ListOf(MapOf())})),
    ],
    "rosetta": [
        ("rosetta.json", Obj({
            "runs": ListOf(Obj({"label": STR})), "videos": ListOf(VIDEO), "epsilon": NUM, "delta": NUM,
            "tuples": ListOf(Obj({"index": INT, "d": INT, "r": NUM, "models": ListOf(STR), "concepts": ListOf(STR),
                                  "importances": ListOf(Opt(NUM)), "videos": ListOf(Obj({"video": INT})),
                                  "media": ListOf(ListOf(STR))}))})),
    ],
}


def _pattern(glob: str) -> re.Pattern[str]:
    """``*`` matches one path part (no '/')."""
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in glob.split("*")) + "$")


_COMPILED = {kind: [(_pattern(g), spec) for g, spec in specs] for kind, specs in SCHEMAS.items()}


def spec_for(kind: str, name: str) -> Spec | None:
    """The spec of file ``name`` of a run of ``kind``, or None when the file has no known shape."""
    return next((spec for pat, spec in _COMPILED.get(kind, []) if pat.match(name)), None)


def check(kind: str, name: str, doc: Any) -> str | None:
    """None when ``doc`` (the parsed JSON file ``name`` of a ``kind`` run) has the expected shape, else the
    problem in one sentence (``"nodes.3.layer: expected a string, got a list"``)."""
    spec = spec_for(kind, name)
    if spec is None:
        return None
    try:
        spec.check(doc, "")
    except _Bad as e:
        return str(e)
    except RecursionError:
        return "nested too deeply"
    return None
