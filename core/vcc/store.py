"""The on-disk layout of a ``vcc`` run: the one place that knows its file names.

Run layout (kind ``vcc``); each class under ``classes/<slug>/``, ``<slug>`` = ``<index>-<name>``::

    classes.json                      [{slug, class_index, class_name, n_images, n_augmented,
                                        n_segments, n_concepts, n_edges, n_significant, layers,
                                        misclassified, timings}]  (one entry per finished class)
    classes/<slug>/graph.json         the VCC (``core.vcc.VCCGraph.to_dict``): layers, class node,
                                      nodes {id, layer, index, size, members, exemplars, kind,
                                      label, exemplar_files}, edges {source, target, weight,
                                      p_value, significant, values, random_values}, meta
    classes/<slug>/metrics.json       per layer (then the class node): n_concepts, n_edges,
                                      branching_factor (incoming edges), mean_edge_weight,
                                      edge_weight_variance, weight_edges, grouped_by
    classes/<slug>/fidelity.json      {enabled, scales, eps, concept/random/matched {layer: mean curve},
                                      random_kind, matched_kind, layers {layer: {eps, concept (m, S),
                                      random (n, S), matched (n, S) or null, concept_ids,
                                      reference_norm, auc {concept, random, matched}, falls_faster,
                                      falls_faster_matched}}, aps, ls, correlation, aps_all_edges,
                                      correlation_all_edges}
    classes/<slug>/segments.npz       segment_masks (N, G, G), segment_image, segment_layer,
                                      segment_parent, segment_score, segment_concept,
                                      segment_logits, centroids.<i> (m, C) per layer index i
    classes/<slug>/images.json        every discovery image: {index, id, source, origin, augment,
                                      file, size, top (5), predicted, predicted_name, correct}
    classes/<slug>/images/NNN.webp    the discovery images (longer side 256)
    classes/<slug>/exemplars/L<i>-C<c>-<k>.webp   exemplar crops of concept c of layer i (the
                                      segment's bounding box, the rest of it dimmed)
    classes/<slug>/class.json         the class's entry of classes.json; written last, it marks
                                      the class finished (what :func:`core.vcc.analyse` asks its store)

:func:`save_class` writes one class through a :class:`core.checkpoint.CheckpointStore` (a
:class:`core.artifacts.RunWriter` also gets the pictures); :func:`load_class` reads it back from a
finished :class:`core.artifacts.Run` or a store; :func:`find_run` opens a run by folder or run id.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from core.artifacts import Run, RunWriter, open_run, slug
from core.data.images import thumbnail
from core.errors import DataError, RunError
from core.jsonsafe import nan_to_null
from core.vcc.segments import upsample_mask

if TYPE_CHECKING:
    from core.vcc.pipeline import VCCResult

KIND = "vcc"
CLASSES = "classes.json"
GRAPH = "graph.json"
METRICS = "metrics.json"
FIDELITY = "fidelity.json"
SEGMENTS = "segments.npz"
IMAGES = "images.json"
MARKER = "class.json"
THUMB_SIDE = 256
EXEMPLAR_SIDE = 128
DEBUG_KIND = "vcc-debug"
DEBUG = "debug.json"  # a vcc-debug run's index (layout: precompute/vcc_debug.py)
DEBUG_PARTS = "parts"  # per-image records while a vcc-debug run is made


def debug_part(n: int) -> str:
    """The failure debugger's record of image ``n`` while a run is made (its finished marker)."""
    return f"{DEBUG_PARTS}/{n:03d}.json"


def debug_segments(n: int) -> str:
    """The segment arrays of image ``n`` of a ``vcc-debug`` run."""
    return f"segments/{n:03d}.npz"


def debug_image(n: int) -> str:
    """The thumbnail of image ``n`` of a ``vcc-debug`` run."""
    return f"images/{n:03d}.webp"


# ----------------------------------------------------------------------------------------------
# Names


def class_slug(index: int, name: str) -> str:
    """The folder name of class ``index`` (``<index>-<first name>``)."""
    return slug(f"{index}-{str(name).split(',')[0]}", 60)


def class_dir(entry_or_slug: dict[str, Any] | str) -> str:
    """``classes/<slug>`` of a ``classes.json`` entry (its ``dir`` when it names one) or a slug."""
    if isinstance(entry_or_slug, dict):
        return str(entry_or_slug.get("dir") or f"classes/{entry_or_slug['slug']}")
    return f"classes/{entry_or_slug}"


def class_file(entry_or_slug: dict[str, Any] | str, name: str) -> str:
    """A file of a class: ``class_file(entry, GRAPH)`` is ``classes/<slug>/graph.json``."""
    return f"{class_dir(entry_or_slug)}/{name}"


def image_file(entry_or_slug: dict[str, Any] | str, index: int) -> str:
    return class_file(entry_or_slug, f"images/{index:03d}.webp")


def exemplar_file(entry_or_slug: dict[str, Any] | str, layer_index: int, concept: int, k: int) -> str:
    return class_file(entry_or_slug, f"exemplars/L{layer_index}-C{concept}-{k}.webp")


# ----------------------------------------------------------------------------------------------
# Records


def dimmed_crop(image: np.ndarray, mask: np.ndarray, max_side: int = EXEMPLAR_SIDE) -> np.ndarray:
    """The segment's bounding-box crop with the pixels outside the segment dimmed, fitted into a square
    (for display: graph nodes line up). ``image`` ``(H, W, 3)`` uint8, ``mask`` ``(G, G)`` bool."""
    full = upsample_mask(mask, image.shape[:2])
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = image[sl].astype(np.float32)
    inside = full[sl][..., None]
    crop = np.where(inside, crop, 0.3 * crop + 0.7 * 200.0)
    square = ImageOps.pad(Image.fromarray(crop.round().astype(np.uint8)), (max_side, max_side),
                          method=Image.LANCZOS, color=(240, 242, 246))
    return np.asarray(square)


def fidelity_record(result: VCCResult) -> dict[str, Any]:
    """``fidelity.json``: suppression curves per layer (and their means), APS and LS."""
    if result.fidelity is None and result.records.get("fidelity") is not None:
        return result.records["fidelity"]  # a loaded result: what the run holds
    cfg = result.config
    if result.fidelity is None:
        return {"enabled": False, "scales": list(cfg.suppression_scales)}
    fid = result.fidelity.to_dict()
    layers = {}
    for name, curves in result.fidelity.suppression.items():
        matched = curves.matched_accuracy
        layers[name] = {"eps": curves.eps.tolist(), "scales": curves.scales.tolist(),
                        "reference_norm": curves.reference_norm, "concept_ids": list(curves.concept_ids),
                        "concept": curves.concept_accuracy.tolist(), "random": curves.random_accuracy.tolist(),
                        "matched": None if matched is None else matched.tolist(),
                        "auc": nan_to_null(dict(zip(("concept", "random", "matched"),
                                                    (*curves.auc(), curves.auc_matched()), strict=True))),
                        "falls_faster": curves.falls_faster(),
                        "falls_faster_matched": curves.falls_faster_matched()}

    def mean(a: np.ndarray | None) -> list[float] | None:
        return a.mean(axis=0).tolist() if a is not None and len(a) else None

    return {"enabled": True, "scales": list(cfg.suppression_scales), "eps": list(cfg.suppression_scales),
            "eps_unit": "multiple of the mean L2 norm of the class images' GAP features at the layer",
            "metric": "top-1 accuracy on the target class over the class images",
            "concept": {n: mean(c.concept_accuracy) for n, c in result.fidelity.suppression.items()},
            "random": {n: mean(c.random_accuracy) for n, c in result.fidelity.suppression.items()},
            "random_kind": "isotropic: N(0, I) directions",
            "matched": {n: mean(c.matched_accuracy) for n, c in result.fidelity.suppression.items()},
            "matched_kind": cfg.matched_random,
            "layers": layers, **{k: fid[k] for k in ("aps", "ls", "correlation", "aps_all_edges",
                                                     "correlation_all_edges")}}


def image_records(result: VCCResult, class_slug_: str, info: list[dict[str, Any]] | None = None
                  ) -> list[dict[str, Any]]:
    """``images.json``: per discovery image its file, size, top classes and whether the model is right
    (``info``: per image ``{id, source, origin, augment}`` from the caller; the top classes are
    ``result.records["top"]``, set by :func:`core.vcc.analyse`)."""
    out = []
    for i, image in enumerate(result.images):
        rec: dict[str, Any] = {"index": i, "id": str(i), "source": None, "origin": None, "augment": None}
        rec.update((info or [{}] * len(result.images))[i])
        rec["file"] = image_file(class_slug_, i)
        rec["size"] = list(image.shape[:2])
        tops = result.records.get("top")
        if tops:
            rec.update(tops[i])
        out.append(rec)
    return out


def class_entry(result: VCCResult, class_slug_: str, records: list[dict[str, Any]],
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The class's ``class.json`` / ``classes.json`` entry."""
    g = result.graph
    concepts = {name: len(g.layer_nodes(name)) for name in g.layers}
    correct = [r.get("correct") for r in records]
    entry = {"slug": class_slug_, "class_index": g.class_index, "class_name": g.class_name,
             "dir": class_dir(class_slug_), "n_images": len(records), "n_photos": len(records), "n_augmented": 0,
             "selected_by": "label", "n_random_images": g.meta.get("n_random_images"), "layers": list(g.layers),
             "n_segments": len(result.segments), "n_concepts": concepts, "n_edges": len(g.edges),
             "n_significant": len(g.kept_edges()),
             "misclassified": [r["id"] for r in records if r.get("correct") is False],
             "accuracy": float(np.mean([bool(c) for c in correct])) if correct else None,
             "timings": {k: round(v, 3) for k, v in result.timings.items()},
             "warnings": result.warnings, **(extra or {})}
    if result.fidelity is not None:
        entry["suppression_falls_faster"] = {n: c.falls_faster() for n, c in result.fidelity.suppression.items()}
        entry["suppression_falls_faster_matched"] = {n: c.falls_faster_matched()
                                                     for n, c in result.fidelity.suppression.items()}
        entry["aps_ls_pearson"] = result.fidelity.to_dict()["correlation"].get("pearson")
    return entry


# ----------------------------------------------------------------------------------------------
# Writing and reading one class


def is_finished(store: Any, class_slug_: str) -> bool:
    """Whether ``store`` (a checkpoint store or a run) holds the finished class ``class_slug_``."""
    return bool(store.has(class_file(class_slug_, MARKER)))


def save_class(store: Any, result: VCCResult, *, info: list[dict[str, Any]] | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every file of one class into ``store`` (a :class:`core.checkpoint.CheckpointStore`; a
    :class:`core.artifacts.RunWriter` also gets the thumbnails and exemplar pictures); ``class.json``
    is written last. Returns the class's entry."""
    g = result.graph
    name = class_slug(g.class_index, g.class_name)
    pictures = isinstance(store, RunWriter) and bool(result.images)
    records = image_records(result, name, info)
    if pictures:
        for i, image in enumerate(result.images):
            store.write_image(image_file(name, i), thumbnail(image, THUMB_SIDE))
    graph = g.to_dict()
    layer_index = {layer: i for i, layer in enumerate(g.layers)}
    old_files = {n["id"]: n.get("exemplar_files") or [] for n in result.records.get("graph", {}).get("nodes", [])}
    for node in graph["nodes"]:
        files = []
        if node["kind"] == "concept" and pictures:
            li = layer_index[node["layer"]]
            for k, sid in enumerate(node["exemplars"]):
                file = exemplar_file(name, li, node["index"], k)
                store.write_image(file, dimmed_crop(result.images[result.segments.image[sid]],
                                                    result.segments.masks[sid]))
                files.append(file)
        node["exemplar_files"] = files or old_files.get(node["id"], [])
    graph["meta"]["timings"] = result.timings
    store.save_json(class_file(name, GRAPH), graph)
    store.save_json(class_file(name, METRICS), [m.to_dict() for m in g.metrics(result.config.metrics_group_by)])
    store.save_json(class_file(name, FIDELITY), fidelity_record(result))
    arrays = {k: v for k, v in result.arrays().items() if not k.startswith("features.")}
    store.save_arrays(class_file(name, SEGMENTS), **arrays)
    store.save_json(class_file(name, IMAGES), records)
    entry = class_entry(result, name, records, extra)
    store.save_json(class_file(name, MARKER), entry)
    result.records.update({"class": entry, "images": records, "graph": graph})
    return entry


def _json(source: Any, name: str) -> Any:
    return source.load_json(name)


def _arrays(source: Any, name: str) -> dict[str, np.ndarray]:
    return source.load_npz(name) if isinstance(source, Run) else source.load_arrays(name)


def load_class(source: Run | Any, entry_or_slug: dict[str, Any] | str) -> VCCResult:
    """One class of a run (or of a checkpoint store) as a :class:`core.vcc.VCCResult`: graph, segments,
    centroids, segment concepts and logits, the saved fidelity record, entry and image records. Not
    kept on disk: segment features, raw clusterings, the images themselves (``images`` is empty)."""
    from core.vcc.config import VCCConfig
    from core.vcc.graph import VCCGraph
    from core.vcc.pipeline import VCCResult
    from core.vcc.segments import Segments

    entry = entry_or_slug if isinstance(entry_or_slug, dict) else _json(source, class_file(entry_or_slug, MARKER))
    graph_json = _json(source, class_file(entry, GRAPH))
    graph = VCCGraph.from_dict(graph_json)
    arrays = _arrays(source, class_file(entry, SEGMENTS))
    where = getattr(source, "path", None) or "store"
    try:
        segs = Segments.from_arrays(graph.layers, {k[len("segment_"):]: v for k, v in arrays.items()
                                                   if k.startswith("segment_")})
        centroids = {name: arrays[f"centroids.{i}"] for i, name in enumerate(graph.layers)}
        concept, logits = arrays["segment_concept"], arrays["segment_logits"]
        config = VCCConfig.from_dict(graph.meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"run {where}: class {entry.get('slug')} is incomplete or invalid ({e})") from None
    meta = graph.meta
    records = {"class": entry, "graph": graph_json, "fidelity": _json(source, class_file(entry, FIDELITY))}
    if source.has(class_file(entry, IMAGES)):
        records["images"] = _json(source, class_file(entry, IMAGES))
    timings = meta.get("timings") if isinstance(meta.get("timings"), dict) else {}
    return VCCResult(graph, segs, centroids, {}, concept, logits, {}, None, config, dict(timings),
                     list(entry.get("warnings") or []), list(meta.get("kept_images") or []), records=records)


# ----------------------------------------------------------------------------------------------
# Runs


def find_run(ref: str | Path, root: str | Path | None = None) -> Run:
    """A ``vcc`` run by folder, or by run id under ``<root>/vcc/`` (the one way to find one)."""
    p = Path(ref)
    if not (p / "manifest.json").is_file() and root is not None and (Path(root) / KIND / str(ref)
                                                                     / "manifest.json").is_file():
        p = Path(root) / KIND / str(ref)
    if not p.is_dir():
        under = f" (nor a run id under {Path(root) / KIND})" if root is not None else ""
        raise RunError(f"{ref}: no such run folder{under}")
    run = open_run(p)
    if run.kind != KIND:
        raise RunError(f"{ref}: a {run.kind!r} run, not a {KIND!r} run")
    return run


def classes(run: Run) -> list[dict[str, Any]]:
    """The ``classes.json`` entries of a run (its finished classes)."""
    out = run.load_json(CLASSES)
    if not isinstance(out, list):
        raise RunError(f"run {run.path}: {CLASSES} is not a list")
    return out


def entry_for(run: Run, cls: int | str) -> dict[str, Any]:
    """The entry of class ``cls`` (an index, a name or a slug) in ``run``."""
    entries = classes(run)
    for e in entries:
        names = {str(e.get("class_index")), str(e.get("slug")), str(e.get("class_name")),
                 str(e.get("class_name", "")).split(",")[0]}
        if str(cls) in names:
            return e
    raise DataError(f"run {run.path} has no class {cls!r}; it holds "
                    f"{', '.join(str(e.get('class_name')) for e in entries) or 'none'}")


def save(results: VCCResult | list[VCCResult], target: RunWriter | str | Path, *, model: Any = None,
         run_id: str | None = None, overwrite: bool = False) -> Path:
    """Write ``results`` into an open writer (returns its partial folder), or as a finished ``vcc`` run
    under the artifact root ``target`` (returns ``<target>/vcc/<run_id>``)."""
    items = results if isinstance(results, list) else [results]

    def write(writer: RunWriter) -> list[dict[str, Any]]:
        entries = [save_class(writer, r, extra={k: v for k, v in r.records.get("class", {}).items()
                                                if k in ("n_photos", "n_augmented", "selected_by")})
                   for r in items]
        writer.write_json(CLASSES, entries)
        return entries

    if isinstance(target, RunWriter):
        write(target)
        return target.dir
    layers = list(items[0].graph.layers) if items else []
    config = {"layers": layers, "vcc": items[0].config.to_dict() if items else {},
              "seed": items[0].config.seed if items else 0}
    data = {"description": f"{len(items)} class{'es' if len(items) != 1 else ''}"}
    with RunWriter(target, KIND, model=model or "unknown", data=data, config=config, run_id=run_id,
                   overwrite=overwrite) as writer:
        entries = write(writer)
        for r in items:
            for w in r.warnings:
                writer.warn(w["code"], w["message"], setting=w.get("setting"), layer=w.get("layer"),
                            figure=w.get("figure"))
        return writer.finish({"n_classes": len(entries), "classes": [e["class_name"].split(",")[0] for e in entries],
                              "n_layers": len(layers), "layers": layers,
                              "concepts": int(sum(sum(e["n_concepts"].values()) for e in entries)),
                              "significant_edges": int(sum(e["n_significant"] for e in entries)),
                              "misclassified": int(sum(len(e["misclassified"]) for e in entries))})


def load(run_dir: str | Path | Run, cls: int | str) -> VCCResult:
    """Class ``cls`` (index, name or slug) of the finished ``vcc`` run ``run_dir``."""
    run = run_dir if isinstance(run_dir, Run) else find_run(run_dir)
    return load_class(run, entry_for(run, cls))
