"""`precompute vcc`: the Visual Concept Connectome of image classes (chapter 5, methods.md section 3).

For every class: top-down segments of its images, concepts per layer (k-means, pruned), ITCAV edges
between adjacent layers and to the class node with per-random-set values and t-test p-values, graph
metrics per layer, and the validation (concept suppression against random directions; APS against
LS). The algorithm is :func:`core.vcc.build_vcc`; this job loads the images, runs it class by class
and writes the run.

Inputs: ``--target-class`` (an index or a name) with ``--images`` holding that class's images (a
folder, files, or ``demo``); or ``--images`` with one sub-folder per class (named after the model's
classes) and ``--classes a b c`` or ``--num-classes N``. ``--random`` (default ``demo``: the shipped
photos) gives the images of other classes for CAVs and tests; images labelled with the analysed
class are left out of it. ``--augment N`` fills a class with fewer than N images up to N with
random crops and horizontal flips of its photos, and ``--random-augment N`` does the same for the
random pool; the data spec then says how many images are augmented copies (they are not
independent photos). ``--from-predictions N`` gives a class that has no labelled photo (say the
predicted class of a mistake, to explain it with both classes' VCCs) the crops and flips (N per
photo of ``--images``) that the model predicts as that class: the model's own view of the class,
recorded as such (``selected_by: prediction``), never as photos of it; the photos they were cut from
are then left out of that class's random pool. Default layers: four of the model's stages, evenly
spaced and ending at the deepest (``--all-layers``: every stage). Every VCC setting of
:class:`core.vcc.VCCConfig` is a flag.

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
                                      edge_weight_variance, weight_edges, grouped_by (the edges the
                                      weight statistics are over: leaving the layer by default)
    classes/<slug>/fidelity.json      {enabled, scales, eps (= scales: multiples of the layer's
                                      mean GAP norm), concept {layer: mean curve}, random {layer:
                                      mean curve}, matched {layer: mean curve or null}, random_kind,
                                      matched_kind, layers {layer: {eps (absolute), concept (m, S),
                                      random (n, S), matched (n, S) or null, concept_ids,
                                      reference_norm, auc {concept, random, matched} (mean accuracy
                                      over the scale range; null when missing), falls_faster,
                                      falls_faster_matched}},
                                      aps, ls, correlation, aps_all_edges, correlation_all_edges}
    classes/<slug>/segments.npz       segment_masks (N, G, G), segment_image, segment_layer,
                                      segment_parent, segment_score, segment_concept,
                                      segment_logits, centroids.<i> (m, C) per layer index i
    classes/<slug>/images.json        every discovery image: {index, id, source, origin, augment,
                                      file, top (5), predicted, predicted_name, correct}
    classes/<slug>/images/NNN.webp    the discovery images (longer side 256)
    classes/<slug>/exemplars/L<i>-C<c>-<k>.webp   exemplar crops of concept c of layer i (the
                                      segment's bounding box, the rest of it dimmed)
    classes/<slug>/class.json         the class's entry of classes.json; written last, it marks
                                      the class finished

A single-class run uses the same layout. Classes run one after the other; a killed run resumes
at the first class without ``class.json`` (rerun the same command).
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from core.artifacts import RunWriter, slug
from core.data.images import ImageItem, demo_images, load_image, thumbnail
from core.data.labels import label_index
from core.errors import DataError, UserError
from core.models import ModelBundle
from core.vcc import VCCConfig, VCCResult, build_vcc
from core.vcc.predict import predictions, top_record
from core.vcc.segments import upsample_mask
from precompute.common import load_model, progress, resolve_device, seed_everything
from precompute.predict import load_images

THUMB_SIDE = 256
EXEMPLAR_SIDE = 128
DEFAULT_LAYERS = 4
AUGMENT_SCALE = (0.6, 0.95)
PREDICTED_SELECTION = ("crops and flips of the photos that the model predicts as the class: the model's own view "
                       "of a class that has no labelled photo here, not photos of it")
AUGMENTATION = ("random crops (a {lo:.0%}-{hi:.0%} side window of the photo) and horizontal flips of the "
                "class's photos: augmented copies, not independent photos")


# ----------------------------------------------------------------------------------------------
# Settings


def config_from_args(args: Any) -> VCCConfig:
    """A :class:`VCCConfig` from the flags that were given (the rest keep methods.md's defaults)."""
    values: dict[str, Any] = {}
    for f in VCCConfig.__dataclass_fields__:
        v = getattr(args, f, None)
        if v is not None:
            values[f] = v
    values["seed"] = args.seed
    if "prune" in values:
        values["prune"] = parse_prune(values["prune"])
    if "commonality" in values:
        values["commonality"] = parse_commonality(values["commonality"])
    if values.get("suppression_concepts") == 0:
        values["suppression_concepts"] = None
    try:
        return VCCConfig(**values)
    except (TypeError, ValueError) as e:
        raise UserError(f"VCC settings: {e}") from None


def _key_values(value: Any, flag: str, known: Any) -> dict[str, float]:
    """``KEY=VALUE`` words (or ``a=1,b=2``, or a mapping from a config file) as float keyword arguments."""
    names = ", ".join(known)
    if isinstance(value, dict):
        items = list(value.items())
    else:
        items = []
        for part in ([value] if isinstance(value, str) else value):
            for kv in str(part).split(","):
                if not kv:
                    continue
                if "=" not in kv:
                    raise UserError(f"{flag} {kv!r}: write KEY=VALUE with KEY one of {names}")
                k, v = kv.split("=", 1)
                items.append((k.strip(), v))
    out = {}
    for k, v in items:
        if k not in known:
            raise UserError(f"{flag}: unknown parameter {k!r}; use {names}")
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            raise UserError(f"{flag} {k}={v!r}: not a number") from None
    return out


def parse_prune(value: Any) -> dict[str, float]:
    """``--prune A=-102 K=115`` (or a mapping from a config file) as keyword arguments of PruneSigmoid."""
    from core.vcc import PruneSigmoid

    return _key_values(value, "--prune", PruneSigmoid.__dataclass_fields__)


def parse_commonality(value: Any) -> dict[str, float] | None:
    """``--commonality high_share=0.5 ...`` as keyword arguments of :class:`core.vcc.config.Commonality`;
    ``off`` (or ``false``/``none``, or ``false`` in a config file) turns the filter off: ``None``."""
    from core.vcc.config import Commonality

    words = [value] if isinstance(value, (str, bool)) else value
    if isinstance(words, list) and len(words) == 1 and str(words[0]).strip().lower() in ("off", "false", "none",
                                                                                         "no"):
        return None
    return _key_values(value, "--commonality", Commonality.__dataclass_fields__)


def default_layers(bundle: ModelBundle, every: bool, n: int = DEFAULT_LAYERS) -> list[str]:
    """The model's stages (``every``), or ``n`` of them evenly spaced, ending at the deepest."""
    stages = list(bundle.stages)
    if not stages:
        raise UserError(f"{bundle.spec}: no default layers known; pass --layers (see `python -m precompute "
                        f"layers --model {bundle.spec}`)")
    if every or len(stages) <= n:
        return stages
    picks = np.round(np.linspace(1, len(stages) - 1, n)).astype(int)
    return [stages[i] for i in dict.fromkeys(picks.tolist())]


# ----------------------------------------------------------------------------------------------
# Images


@dataclass
class Pool:
    """Loaded images with where each came from (``origin``: enough to load it again) and, for an
    augmented copy, how it was made (``augment``: ``{of, box [y, x, h, w], flip}``)."""

    items: list[ImageItem]
    spec: dict[str, Any]
    origin: dict[str, dict[str, Any]] = field(default_factory=dict)
    augment: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_pool(source: list[str]) -> Pool:
    """``demo``, ``opencv-doc``, a folder (labels from sub-folders), or image files."""
    items, spec = load_images(source)
    origin = {}
    for it in items:
        if source in (["demo"], ["opencv-doc"]):
            origin[it.id] = {"demo": it.id, "opencv": source == ["opencv-doc"]}
        else:
            origin[it.id] = {"file": str(Path(it.source).resolve())}
    return Pool(items, spec, origin)


def load_origin(origin: dict[str, Any], augment: dict[str, Any] | None = None) -> np.ndarray:
    """An image recorded in a run's ``images.json`` (a file or a shipped photo, cropped and flipped
    again when it is an augmented copy)."""
    if "file" in origin:
        image = load_image(origin["file"])
    elif "demo" in origin:
        image = demo_images([origin["demo"]], opencv=bool(origin.get("opencv")))[0].image
    else:
        raise DataError(f"cannot load an image of unknown origin {origin}")
    if augment:
        y, x, h, w = augment["box"]
        image = image[y:y + h, x:x + w]
        if augment.get("flip"):
            image = image[:, ::-1]
        image = np.ascontiguousarray(image)
    return image


def crops(items: list[ImageItem], seed: int, tag: str) -> Iterator[tuple[ImageItem, dict[str, Any]]]:
    """Endless random crops (and flips) of ``items``, cycling over the photos, each with how it was made
    (``{of, box [y, x, h, w], flip}``); the same ``seed`` and ``tag`` give the same sequence."""
    rng = np.random.default_rng([seed, 0x5CC, sum(map(ord, tag))])
    k = 0
    while items:
        src = items[k % len(items)]
        k += 1
        h, w = src.image.shape[:2]
        s = rng.uniform(*AUGMENT_SCALE)
        ch, cw = max(1, round(h * s)), max(1, round(w * s))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        flip = bool(rng.integers(0, 2))
        image = src.image[y:y + ch, x:x + cw]
        image = np.ascontiguousarray(image[:, ::-1] if flip else image)
        yield (ImageItem(f"{src.id}~aug{k:03d}", image, f"crop {ch}x{cw} at ({y}, {x}){' flipped' if flip else ''} "
                         f"of {src.source}", src.label), {"of": src.id, "box": [y, x, ch, cw], "flip": flip})


def augmented(items: list[ImageItem], n: int, seed: int, tag: str) -> tuple[list[ImageItem], dict[str, dict]]:
    """``items`` filled up to ``n`` with random crops (and flips) of them, cycling over the photos."""
    made = list(itertools.islice(crops(items, seed, tag), max(0, n - len(items))))
    return list(items) + [it for it, _ in made], {it.id: info for it, info in made}


def resolve_class(text: str | int, bundle: ModelBundle) -> int:
    """A class index or name of the model; an unknown one is a one-line error with suggestions."""
    import difflib

    names = bundle.class_names
    text = str(text).strip()
    index = label_index(text, names)
    if index is not None and (not names or 0 <= index < len(names)):
        return index
    if text.isdigit():
        raise UserError(f"class index {text} is out of range for {bundle.spec} ({len(names or [])} classes)")
    if not names:
        raise UserError(f"{bundle.spec} has no class names; give the class as an index")
    flat = {part.strip().lower(): n for n in names for part in n.split(",")}
    close = difflib.get_close_matches(text.lower(), list(flat), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; give an index or a class name"
    raise UserError(f"unknown class {text!r} for {bundle.spec}{hint}")


@dataclass
class ClassImages:
    index: int
    name: str
    items: list[ImageItem]
    n_photos: int
    augment: dict[str, dict[str, Any]]
    selected_by: str = "label"
    """``label``: the class's labelled photos (and copies of them); ``prediction``: crops the model
    predicts as the class (``--from-predictions``)."""

    @property
    def slug(self) -> str:
        return class_slug(self.index, self.name)


def class_slug(index: int, name: str) -> str:
    return slug(f"{index}-{name.split(',')[0]}", 60)


def labels_of(pool: Pool, bundle: ModelBundle) -> list[int | None]:
    return [label_index(it.label, bundle.class_names) for it in pool.items]


def pick_classes(args: Any, bundle: ModelBundle, pool: Pool) -> list[tuple[int, list[ImageItem]]]:
    """The classes to analyse with their (unaugmented) images, from ``--target-class`` /
    ``--classes`` / ``--num-classes`` and the labels of ``--images``."""
    labels = labels_of(pool, bundle)
    labelled = [lab for lab in labels if lab is not None]
    where = " ".join(args.images or ["demo"])

    def images_of(index: int) -> list[ImageItem]:
        return [it for it, lab in zip(pool.items, labels, strict=True) if lab == index]

    def missing(index: int) -> UserError:
        present = sorted({it.label for it in pool.items if it.label})
        return DataError(f"no images of class {index} ({bundle.class_name(index)}) in {where}"
                         + (f"; its classes: {', '.join(present[:8])}" if present else ""))

    if args.target_class is not None:
        index = resolve_class(args.target_class, bundle)
        if not labelled:  # a flat folder or files: all of them are the class's images
            return [(index, list(pool.items))]
        found = images_of(index)
        if not found and not getattr(args, "from_predictions", 0):
            raise missing(index)
        return [(index, found)]
    if args.classes:
        out = []
        for text in args.classes:
            index = resolve_class(text, bundle)
            found = images_of(index)
            if not found and not getattr(args, "from_predictions", 0):
                raise missing(index)
            if index not in [i for i, _ in out]:
                out.append((index, found))
        return out
    if not labelled:
        raise UserError(f"{where}: images without class labels; name their class with --target-class, or put "
                        "them in one sub-folder per class and pass --classes or --num-classes")
    order = list(dict.fromkeys(labelled))
    if args.num_classes is not None:
        if args.num_classes < 1:
            raise UserError("--num-classes must be at least 1")
        order = order[: args.num_classes]
    elif len(order) > 1:
        raise UserError(f"{where} holds {len(order)} classes; pick with --target-class, --classes or --num-classes")
    return [(index, images_of(index)) for index in order]


def predicted_as(bundle: ModelBundle, pool: Pool, index: int, per_photo: int, n: int, seed: int,
                 batch_size: int) -> tuple[list[ImageItem], dict[str, dict[str, Any]]]:
    """Up to ``n`` crops and flips (``per_photo`` drawn from each photo of ``pool``) that the model's
    top-1 prediction puts in class ``index``, with how each was made. Crops are made and classified a
    batch at a time (only the chosen ones are kept), stopping once ``n`` are found."""
    made = crops(pool.items, seed, f"predicted{index}")
    chosen: list[tuple[ImageItem, dict[str, Any]]] = []
    left = len(pool.items) * per_photo
    while left > 0 and len(chosen) < n:
        batch = list(itertools.islice(made, min(batch_size, left)))
        left -= len(batch)
        probs = predictions(bundle, [it.image for it, _ in batch], batch_size)
        chosen.extend(c for c, p in zip(batch, probs, strict=True) if int(np.argmax(p)) == index)
    chosen = chosen[:n]
    return [it for it, _ in chosen], {it.id: info for it, info in chosen}


def class_sets(args: Any, bundle: ModelBundle, pool: Pool, cfg: VCCConfig) -> list[ClassImages]:
    out = []
    for index, items in pick_classes(args, bundle, pool):
        if not items:  # no labelled photo: --from-predictions
            chosen, info = predicted_as(bundle, pool, index, int(args.from_predictions), cfg.n_images, args.seed,
                                        cfg.batch_size)
            if not chosen:
                raise DataError(f"none of the {int(args.from_predictions) * len(pool.items)} crops of "
                                f"{' '.join(args.images or ['demo'])} is predicted as {bundle.class_name(index)}; "
                                "give that class's images instead")
            out.append(ClassImages(index, bundle.class_name(index), chosen, 0, info, "prediction"))
            continue
        items = items[: cfg.n_images]
        n_photos = len(items)
        info: dict[str, dict] = {}
        if args.augment and len(items) < min(args.augment, cfg.n_images):
            items, info = augmented(items, min(args.augment, cfg.n_images), args.seed, f"class{index}")
        out.append(ClassImages(index, bundle.class_name(index), items, n_photos, info))
    return out


def random_pool(pool: Pool, bundle: ModelBundle, index: int, n_augment: int, seed: int,
                exclude: set[str] | frozenset[str] = frozenset()) -> tuple[list[ImageItem], dict[str, dict]]:
    """The random images for class ``index``: the pool without images labelled with that class (nor
    the ids in ``exclude``), filled up to ``n_augment`` with crops and flips."""
    items = [it for it, lab in zip(pool.items, labels_of(pool, bundle), strict=True)
             if lab != index and it.id not in exclude]
    if n_augment and len(items) < n_augment:
        return augmented(items, n_augment, seed, "random")
    return items, {}


# ----------------------------------------------------------------------------------------------
# Writing one class


class StageBars:
    """``build_vcc``'s ``progress(stage, done, total)`` as one progress bar per stage on stderr."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{self.prefix} {stage}", file=sys.stderr,
                                          mininterval=0.5, dynamic_ncols=True, leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def dimmed_crop(image: np.ndarray, mask: np.ndarray, max_side: int = EXEMPLAR_SIDE) -> np.ndarray:
    """The segment's bounding-box crop with the pixels outside the segment dimmed, fitted into a square
    (for display: graph nodes line up)."""
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
                        "auc": {k: (v if np.isfinite(v) else None)
                                for k, v in zip(("concept", "random", "matched"),
                                                (*curves.auc(), curves.auc_matched()), strict=True)},
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


def write_class(writer: RunWriter, bundle: ModelBundle, cls: ClassImages, pool: Pool, result: VCCResult,
                probs: np.ndarray) -> dict[str, Any]:
    """Every file of one class; returns its ``class.json`` entry (written last)."""
    base = f"classes/{cls.slug}"
    g = result.graph
    segs = result.segments
    images = [it.image for it in cls.items]
    records = []
    for i, it in enumerate(cls.items):
        file = f"{base}/images/{i:03d}.webp"
        writer.write_image(file, thumbnail(it.image, THUMB_SIDE))
        aug = cls.augment.get(it.id)
        origin = pool.origin.get(aug["of"] if aug else it.id)
        records.append({"index": i, "id": it.id, "source": it.source, "origin": origin, "augment": aug,
                        "file": file, "size": list(it.image.shape[:2]),
                        **top_record(bundle, probs[i], cls.index)})
    graph = g.to_dict()
    layer_index = {name: i for i, name in enumerate(g.layers)}
    for node in graph["nodes"]:
        files = []
        if node["kind"] == "concept":
            li = layer_index[node["layer"]]
            for k, sid in enumerate(node["exemplars"]):
                name = f"{base}/exemplars/L{li}-C{node['index']}-{k}.webp"
                writer.write_image(name, dimmed_crop(images[segs.image[sid]], segs.masks[sid]))
                files.append(name)
        node["exemplar_files"] = files
    graph["meta"]["timings"] = result.timings
    writer.write_json(f"{base}/graph.json", graph)
    writer.write_json(f"{base}/metrics.json", [m.to_dict() for m in g.metrics(result.config.metrics_group_by)])
    writer.write_json(f"{base}/fidelity.json", fidelity_record(result))
    arrays = {k: v for k, v in result.arrays().items() if not k.startswith("features.")}
    writer.write_npz(f"{base}/segments.npz", **arrays)
    writer.write_json(f"{base}/images.json", records)
    concepts = {name: len(g.layer_nodes(name)) for name in g.layers}
    entry = {"slug": cls.slug, "class_index": cls.index, "class_name": cls.name, "dir": base,
             "n_images": len(cls.items), "n_photos": cls.n_photos, "n_augmented": len(cls.items) - cls.n_photos,
             "selected_by": cls.selected_by,
             "n_random_images": g.meta.get("n_random_images"), "layers": list(g.layers),
             "n_segments": len(segs), "n_concepts": concepts, "n_edges": len(g.edges),
             "n_significant": len(g.kept_edges()),
             "misclassified": [r["id"] for r in records if r["correct"] is False],
             "accuracy": float(np.mean([bool(r["correct"]) for r in records])),
             "timings": {k: round(v, 3) for k, v in result.timings.items()},
             "warnings": result.warnings}
    if result.fidelity is not None:
        entry["suppression_falls_faster"] = {n: c.falls_faster() for n, c in result.fidelity.suppression.items()}
        entry["suppression_falls_faster_matched"] = {n: c.falls_faster_matched()
                                                     for n, c in result.fidelity.suppression.items()}
        entry["aps_ls_pearson"] = result.fidelity.to_dict()["correlation"].get("pearson")
    writer.write_json(f"{base}/class.json", entry)
    return entry


def record_warnings(writer: RunWriter, entries: list[dict[str, Any]]) -> None:
    """The warnings of the class just finished (``entries[-1]``) in the manifest: one per (code, layer),
    naming every finished class it concerns (the writer keeps one entry per code and layer)."""
    merged: dict[tuple[str, str | None], list[tuple[str, dict[str, Any]]]] = {}
    for e in entries:
        for w in e.get("warnings") or []:
            merged.setdefault((w["code"], w.get("layer")), []).append((str(e["class_name"]).split(",")[0], w))
    latest = {(w["code"], w.get("layer")) for w in entries[-1].get("warnings") or []}
    for (code, layer), found in merged.items():
        if (code, layer) not in latest:
            continue
        first = found[0][1]
        message = "; ".join(f"class {name}: {w['message']}" for name, w in found)
        writer.warn(code, message, setting=first.get("setting"), layer=layer, figure=first.get("figure"))


# ----------------------------------------------------------------------------------------------
# The job


def run(args: Any) -> Path:
    seed_everything(args.seed)
    cfg = config_from_args(args)
    device = resolve_device(args.device)
    bundle, layers = load_model(args.model, device, args.layers)
    if bundle.preprocessing.input != "image":
        raise DataError(f"{args.model} takes {bundle.preprocessing.input} input{bundle.input_hint()}; "
                        "the VCC needs an image classifier")
    if not args.layers:
        layers = default_layers(bundle, args.all_layers)
    from core.vcc.forward import execution_order

    layers = execution_order(bundle, layers)
    pool = load_pool(args.images or ["demo"])
    classes = class_sets(args, bundle, pool, cfg)
    random_src = load_pool(args.random or ["demo"])
    randoms = {}
    for c in classes:
        cut_from = {a["of"] for a in c.augment.values()} if c.selected_by == "prediction" else set()
        items, info = random_pool(random_src, bundle, c.index, args.random_augment or 0, args.seed, cut_from)
        if len(items) < 2:
            raise DataError(f"{' '.join(args.random or ['demo'])}: {len(items)} random image(s) of classes other "
                            f"than {c.name}; CAVs and t-tests need at least 2 (pass --random, or --random-augment)")
        randoms[c.index] = (items, info)
    augmentation = AUGMENTATION.format(lo=AUGMENT_SCALE[0], hi=AUGMENT_SCALE[1])
    data = {
        "description": f"{len(classes)} class{'es' if len(classes) != 1 else ''} of "
                       f"{pool.spec.get('description') or pool.spec.get('source')}",
        "images": pool.spec, "random": random_src.spec,
        "classes": [{"index": c.index, "name": c.name, "n_images": len(c.items), "n_photos": c.n_photos,
                     "n_augmented": len(c.items) - c.n_photos, "selected_by": c.selected_by,
                     "ids": [it.id for it in c.items]} for c in classes],
        "from_predictions": getattr(args, "from_predictions", 0) or 0,
        "selection": PREDICTED_SELECTION if any(c.selected_by == "prediction" for c in classes) else None,
        "augment": args.augment or 0, "random_augment": args.random_augment or 0,
        "augmentation": augmentation if any(c.augment for c in classes) or any(v[1] for v in randoms.values())
        else None,
        "n_random_images": {str(c.index): len(randoms[c.index][0]) for c in classes},
    }
    for c in classes:
        if c.selected_by == "prediction":
            warnings.warn(f"class {c.name}: no labelled photo; its {len(c.items)} images are crops the model "
                          f"predicts as {c.name}", stacklevel=2)
        elif c.augment:
            warnings.warn(f"class {c.name}: {len(c.augment)} of its {len(c.items)} images are crops and flips of "
                          f"{c.n_photos} photo(s)", stacklevel=2)
    config = {"layers": layers, "vcc": cfg.to_dict(), "seed": args.seed}
    with RunWriter(args.out, "vcc", model=bundle.describe(), data=data, config=config, run_id=args.run_id,
                   overwrite=args.overwrite) as writer:
        entries = []
        for c in progress(classes, "classes", len(classes)):
            marker = f"classes/{c.slug}/class.json"
            if writer.has(marker):
                entries.append(writer.read_json(marker))
                record_warnings(writer, entries)
                continue
            writer.remove(f"classes/{c.slug}")  # files of an attempt that was killed part way
            images = [it.image for it in c.items]
            rand_items, _ = randoms[c.index]
            bars = StageBars(c.name.split(",")[0])
            try:
                result = build_vcc(bundle, layers, images, [it.image for it in rand_items], c.index, cfg,
                                   progress=bars, n_jobs=max(1, int(getattr(args, "jobs", 1) or 1)))
            finally:
                bars.close()
            probs = predictions(bundle, images, cfg.batch_size)
            entries.append(write_class(writer, bundle, c, pool, result, probs))
            record_warnings(writer, entries)
            writer.write_json("classes.json", entries)
        writer.write_json("classes.json", entries)
        summary = {"n_classes": len(entries), "classes": [e["class_name"].split(",")[0] for e in entries],
                   "n_layers": len(layers), "layers": layers,
                   "concepts": int(sum(sum(e["n_concepts"].values()) for e in entries)),
                   "significant_edges": int(sum(e["n_significant"] for e in entries)),
                   "misclassified": int(sum(len(e["misclassified"]) for e in entries))}
        return writer.finish(summary)
