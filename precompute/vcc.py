"""`precompute vcc`: the Visual Concept Connectome of image classes (chapter 5, methods.md section 3).

For every class: top-down segments of its images, concepts per layer (k-means, pruned), ITCAV edges
between adjacent layers and to the class node with per-random-set values and t-test p-values, graph
metrics per layer, and the validation (concept suppression against random directions; APS against
LS). The analysis is :func:`core.vcc.analyse` (over :func:`core.vcc.build_vcc`); this job loads and
augments the images, runs it class by class and records the run's data, warnings and summary.

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

The run layout (kind ``vcc``, each class under ``classes/<slug>/``) is :mod:`core.vcc.store`'s. Classes
run one after the other through :func:`core.vcc.analyse` with the run writer as its checkpoint store:
a killed run resumes at the first class the store does not hold (rerun the same command).
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
from tqdm import tqdm

from core.artifacts import RunWriter
from core.data.images import ImageItem, demo_images, load_image
from core.data.labels import label_index
from core.errors import DataError, UserError
from core.models import ModelBundle
from core.vcc import VCCConfig, analyse
from core.vcc import store as vcc_store
from core.vcc.analysis import default_layers, resolve_class
from core.vcc.forward import execution_order
from core.vcc.predict import predictions
from core.vcc.store import class_slug
from precompute.common import load_model, progress, resolve_device, seed_everything
from precompute.executor import Unit, executor_from_args
from precompute.predict import load_images
from precompute.units import vcc_class_unit

# VCCConfig fields whose flag is not --field-name, or that the subcommand adds itself (seed: shared;
# prune and commonality take KEY=VALUE words)
VCC_FLAGS: dict[str, str] = {}
VCC_OWN = ("seed", "prune", "commonality")
AUGMENT_SCALE = (0.6, 0.95)
PREDICTED_SELECTION = ("crops and flips of the photos that the model predicts as the class: the model's own view "
                       "of a class that has no labelled photo here, not photos of it")
AUGMENTATION = ("random crops (a {lo:.0%}-{hi:.0%} side window of the photo) and horizontal flips of the "
                "class's photos: augmented copies, not independent photos")


# ----------------------------------------------------------------------------------------------
# Settings


def config_from_args(args: Any) -> VCCConfig:
    """A :class:`VCCConfig` from the parsed flags (generated from its fields by :mod:`precompute.config_args`);
    ``--prune`` and ``--commonality`` take ``KEY=VALUE`` words, ``--suppression-concepts 0`` means all."""
    from precompute.config_args import config_from_args as from_args

    values = {k: v for k, v in vars(args).items() if k not in ("prune", "commonality")}
    if args.prune is not None:
        values["prune"] = parse_prune(args.prune)
    if args.commonality is not None:
        values["commonality"] = parse_commonality(args.commonality)
    return from_args(VCCConfig, values, flags=VCC_FLAGS)


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
        if not found and not args.from_predictions:
            raise missing(index)
        return [(index, found)]
    if args.classes:
        out = []
        for text in args.classes:
            index = resolve_class(text, bundle)
            found = images_of(index)
            if not found and not args.from_predictions:
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


def class_info(c: ClassImages, pool: Pool) -> list[dict[str, Any]]:
    """Per image of class ``c``: ``{id, source, origin, augment}`` (its ``images.json`` records)."""
    info = []
    for it in c.items:
        aug = c.augment.get(it.id)
        info.append({"id": it.id, "source": it.source, "origin": pool.origin.get(aug["of"] if aug else it.id),
                     "augment": aug})
    return info


def class_extra(c: ClassImages) -> dict[str, Any]:
    return {"n_photos": c.n_photos, "n_augmented": len(c.items) - c.n_photos, "selected_by": c.selected_by}


# ----------------------------------------------------------------------------------------------
# The job


def run(args: Any, cfg: VCCConfig | None = None) -> Path:
    seed_everything(args.seed)
    cfg = cfg or config_from_args(args)
    device = resolve_device(args.device)
    bundle, layers = load_model(args.model, device, args.layers)
    if bundle.preprocessing.input != "image":
        raise DataError(f"{args.model} takes {bundle.preprocessing.input} input{bundle.input_hint()}; "
                        "the VCC needs an image classifier")
    layers = execution_order(bundle, layers if args.layers else default_layers(bundle, args.all_layers))
    pool = load_pool(args.images or ["demo"])
    classes = class_sets(args, bundle, pool, cfg)
    random_src = load_pool(args.random or ["demo"])
    randoms = {}
    for c in classes:
        cut_from = {a["of"] for a in c.augment.values()} if c.selected_by == "prediction" else set()
        items, info = random_pool(random_src, bundle, c.index, args.random_augment, args.seed, cut_from)
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
        "from_predictions": args.from_predictions,
        "selection": PREDICTED_SELECTION if any(c.selected_by == "prediction" for c in classes) else None,
        "augment": args.augment, "random_augment": args.random_augment,
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
    executor = executor_from_args(args)
    with RunWriter(args.out, "vcc", model=bundle.describe(), data=data, config=config, run_id=args.run_id,
                   overwrite=args.overwrite) as writer, executor:
        # --executor ray: each class a task writing classes/<slug>/; the loop below reads them back. A task on a
        # GPU takes --jobs CPUs for its segmentation; on CPUs the classes themselves use the cores.
        seg = args.jobs if executor.num_gpus else 1
        executor.fan_out(writer, "classes", [
            Unit(f"class {c.name}", vcc_class_unit,
                 (args.model, args.device, layers, cfg, args.seed, [it.image for it in c.items], c.index,
                  [it.image for it in randoms[c.index][0]], class_info(c, pool), class_extra(c), seg),
                 vcc_store.class_file(c.slug, vcc_store.MARKER), cpus=seg) for c in classes])
        entries = []
        for c in progress(classes, "classes", len(classes)):
            bars = StageBars(c.name.split(",")[0])
            try:  # the writer is the checkpoint store: a class it holds is read back, not recomputed
                result = analyse(bundle, [it.image for it in c.items], c.index, cfg, writer, bars,
                                 random=[it.image for it in randoms[c.index][0]],
                                 layers=layers, n_jobs=args.jobs, info=class_info(c, pool), extra=class_extra(c))
            finally:
                bars.close()
            entries.append(result.records["class"])
            record_warnings(writer, entries)
            writer.write_json(vcc_store.CLASSES, entries)
        writer.write_json(vcc_store.CLASSES, entries)
        summary = {"n_classes": len(entries), "classes": [e["class_name"].split(",")[0] for e in entries],
                   "n_layers": len(layers), "layers": layers,
                   "concepts": int(sum(sum(e["n_concepts"].values()) for e in entries)),
                   "significant_edges": int(sum(e["n_significant"] for e in entries)),
                   "misclassified": int(sum(len(e["misclassified"]) for e in entries))}
        return writer.finish(summary)
