"""`precompute vcc-debug`: the failure debugger (dissertation 5.5, methods.md section 3).

For an image of true class C that the model predicts as P: segment the image top-down exactly as
the VCC job segments its class images (the settings of C's run), assign every segment at every layer
to its nearest concept (L2 to the centroid) among the concepts of C's and P's VCCs at that layer,
and record which segments side with C and which with P, layer by layer, which concepts the image
activates, and the strongest paths (mean edge weight over significant edges) from those concepts to
each class node. The analysis is :mod:`core.vcc.debug`; this job picks the images and writes the run.

``--runs`` are ``vcc`` runs (folders, or run ids under ``--out``) that hold the VCCs of C and P,
made with the same ``--model`` and layers. ``--image`` gives image files or folders (with
``--true-class``, or a folder with one sub-folder per true class); without it, the misclassified
discovery images of ``--runs`` are analysed (those whose predicted class has a VCC in ``--runs``).
An image whose true class has no VCC there is an error (skipped with a warning in a batch). When
only the predicted class has none, the image is analysed against the true class's concepts alone,
with a warning, and its record says so (``vcc_predicted`` null, ``missing_predicted_vcc`` true):
every segment then sides with the true class, which tells nothing about the mistake, so build the
predicted class's VCC when its images can be had. A correctly classified image is analysed against
its class's VCC alone (every segment sides with it).

Run layout (kind ``vcc-debug``)::

    debug.json            {"vccs": {key: {run_id, run_path, slug, class_index, class_name, graph}},
                           "images": [{n, id, source, file, segments, true_class, true_name,
                           predicted, predicted_name, top, correct, vcc_true, vcc_predicted, grid,
                           layers: [{layer, n_segments, n_true, n_predicted, share_true,
                           share_predicted, area_true, area_predicted}], share_true, share_predicted,
                           activated: {true: {node: n}, predicted: {...}}, paths: {true: [{nodes,
                           weights, strength, segments}], predicted: [...]}}]}
    images/NNN.webp       the analysed images (longer side 384)
    segments/NNN.npz      masks (N, G, G), layer (N,), parent (N,), side (N,: 0 true, 1 predicted),
                          concept (N,: rank in its layer of that side's VCC), distance (N,), area (N,)
    vccs/<key>/graph.json a copy of each VCC's graph.json; ``exemplar_files`` point at
    vccs/<key>/tiles/*    a copy of each concept's first exemplar

Work is saved per image through :func:`core.vcc.analysis.debug_images` (the run writer is its
checkpoint store): a killed run resumes at the next unfinished image.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import Run, RunWriter
from core.data.images import ImageItem, image_folder, load_image, thumbnail
from core.data.labels import label_index
from core.errors import DataError, RunError, UserError
from core.models import ModelBundle, resolve_model
from core.vcc import store as vcc_store
from core.vcc.analysis import debug_images
from core.vcc.config import VCCDebugConfig
from core.vcc.debug import ClassVCC, load_vccs, pick_vccs
from core.vcc.predict import predictions
from precompute import vcc as vcc_job
from precompute.common import resolve_device, seed_everything
from precompute.executor import executor_from_args
from precompute.units import vcc_debug_units

IMAGE_SIDE = 384


# ----------------------------------------------------------------------------------------------
# VCCs from runs (the analysis itself is core.vcc.debug)


def open_vcc_run(text: str, out: str | Path) -> Run:
    """``--runs`` entry: a run folder, or a run id under ``<out>/vcc/`` (:func:`core.vcc.store.find_run`)."""
    try:
        return vcc_store.find_run(text, out)
    except RunError as e:
        raise RunError(f"--runs {e}") from None


def _norm_spec(spec: str) -> str:
    """A model spec with the paths in it resolved, so that two spellings of one file compare equal."""
    parts = []
    for token in spec.replace("@", ":@:").split(":"):
        p = Path(token)
        parts.append(str(p.resolve()) if token and token != "@" and p.exists() else token)
    return ":".join(parts)


def check_model(bundle: ModelBundle, vccs: dict[int, ClassVCC]) -> None:
    for v in vccs.values():
        if _norm_spec(v.model_spec) != _norm_spec(bundle.spec):
            raise UserError(f"run {v.run.run_id} was made with model {v.model_spec}, not {bundle.spec}; "
                            "the concepts only mean something for the model that found them")


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclass
class Job:
    id: str
    image: np.ndarray
    source: str
    true_class: int


def images_from_args(args: Any, bundle: ModelBundle) -> list[Job]:
    """``--image`` files and folders with their true classes."""
    true = vcc_job.resolve_class(args.true_class, bundle) if args.true_class is not None else None
    jobs = []
    for text in args.image:
        p = Path(text)
        items = image_folder(p) if p.is_dir() else [ImageItem(p.stem, load_image(p), str(p))]
        for it in items:
            label = label_index(it.label, bundle.class_names) if true is None else true
            if label is None:
                raise UserError(f"{it.source}: unknown true class; pass --true-class (or put the images in "
                                "sub-folders named after their classes)")
            jobs.append(Job(it.id, it.image, str(Path(it.source).resolve()), label))
    return jobs


def images_from_runs(vccs: dict[int, ClassVCC]) -> list[Job]:
    """The misclassified discovery images of the runs."""
    jobs = []
    for v in vccs.values():
        for rec in v.run.load_json(vcc_store.class_file(v.slug, vcc_store.IMAGES)):
            if rec.get("correct") is False:
                image = vcc_job.load_origin(rec["origin"], rec.get("augment"))
                jobs.append(Job(f"{v.slug}--{rec['id']}", image, rec["source"], v.class_index))
    if not jobs:
        raise DataError("--runs: the model gets every discovery image right; pass --image")
    return jobs


# ----------------------------------------------------------------------------------------------
# The job


def copy_vcc(writer: RunWriter, v: ClassVCC) -> str:
    """Copy the graph and one exemplar tile per concept into the debug run; returns the graph file."""
    base = f"vccs/{v.key}"
    graph = {**v.graph_json, "nodes": []}
    for node in v.graph_json["nodes"]:
        files = node.get("exemplar_files") or []
        tiles = []
        if files:
            tile = f"{base}/tiles/{Path(files[0]).name}"
            if not writer.has(tile):
                writer.write_bytes(tile, v.run.read_bytes(files[0]))
            tiles.append(tile)
        graph["nodes"].append({**node, "exemplar_files": tiles})
    writer.write_json(f"{base}/graph.json", graph)
    return f"{base}/graph.json"


def build_config(args: Any) -> VCCDebugConfig:
    """The :class:`VCCDebugConfig` of the parsed flags (a bad value is one line naming its flag)."""
    from precompute.cli import VCC_DEBUG_FLAGS
    from precompute.config_args import config_from_args

    return config_from_args(VCCDebugConfig, args, flags=VCC_DEBUG_FLAGS)


def run(args: Any, config: VCCDebugConfig) -> Path:
    """The ``vcc-debug`` job: the parsed command line ``args`` (inputs, runs, output) and the debugger's
    ``config``; returns the run folder."""
    seed_everything(args.seed)
    device = resolve_device(args.device)
    runs = [open_vcc_run(r, args.out) for r in args.runs]
    vccs = load_vccs(runs)
    if not vccs:
        raise DataError("--runs hold no finished class")
    bundle = resolve_model(args.model, device)
    check_model(bundle, vccs)
    layer_sets = {tuple(v.graph.layers) for v in vccs.values()}
    if args.layers and tuple(args.layers) not in layer_sets:
        raise UserError(f"--layers {' '.join(args.layers)}: the VCCs use {' | '.join(map(' '.join, layer_sets))}; "
                        "leave --layers out (the debugger uses the VCCs' layers)")
    jobs = images_from_args(args, bundle) if args.image else images_from_runs(vccs)
    plans = []
    missing: dict[int, int] = {}
    for job in jobs:
        probs = predictions(bundle, [job.image], config.batch_size)[0]
        pred = int(np.argmax(probs))
        try:
            plans.append((job, *pick_vccs(vccs, job.true_class, pred, warn=False)))
        except DataError as e:
            if len(jobs) == 1:
                raise
            warnings.warn(f"{job.source}: skipped: {e}", stacklevel=2)
            continue
        if pred != job.true_class and pred not in vccs:
            missing[pred] = missing.get(pred, 0) + 1
    if missing:
        names = ", ".join(f"{bundle.class_name(k).split(',')[0]} ({k})" for k in missing)
        warnings.warn(f"{sum(missing.values())} image(s) are predicted as classes without a VCC in --runs ({names}): "
                      "their segments are matched against their true class's concepts only; build those VCCs with "
                      "`python -m precompute vcc --target-class ...`", stacklevel=2)
    if not plans:
        raise DataError("no image could be analysed: the VCCs of their true classes are not in --runs")
    data = {"description": f"{len(plans)} image{'s' if len(plans) != 1 else ''}"
                           + (" (misclassified discovery images)" if not args.image else ""),
            "images": [{"id": j.id, "source": j.source, "true_class": j.true_class} for j, *_ in plans]}
    settings = {"runs": {r.run_id: r.fingerprint for r in runs}, "paths": config.n_paths,
                "batch_size": config.batch_size, "seed": args.seed}
    executor = executor_from_args(args)
    with RunWriter(args.out, "vcc-debug", model=bundle.describe(), data=data, config=settings, run_id=args.run_id,
                   overwrite=args.overwrite) as writer, executor:
        used: dict[str, dict[str, Any]] = {}
        for v in {v.key: v for _, t, p in plans for v in (t, p) if v is not None}.values():
            used[v.key] = {"run_id": v.run.run_id, "run_path": str(v.run.path), "slug": v.slug,
                           "class_index": v.class_index, "class_name": v.class_name, "layers": list(v.graph.layers),
                           "selected_by": v.selected_by,
                           "graph": copy_vcc(writer, v)}
        # the writer is the checkpoint store: an image it holds is read back, not analysed again
        # (--executor ray: each image a task, which debug_images then reads back)
        images = [(job.image, true, pred) for job, true, pred in plans]
        executor.fan_out(writer, "images", vcc_debug_units(len(images), args.model, args.device, config, args.seed),
                         (images,))
        bars = vcc_job.StageBars("debug")
        try:
            analyses = debug_images(bundle, images, writer, config=config, progress=bars)
        finally:
            bars.close()
        records = []
        for n, ((job, _, pred), result) in enumerate(zip(plans, analyses, strict=True)):
            if not writer.has(vcc_store.debug_image(n)):
                writer.write_image(vcc_store.debug_image(n), thumbnail(job.image, IMAGE_SIDE))
            records.append({"n": n, "id": job.id, "source": job.source, "file": vcc_store.debug_image(n),
                            "segments": vcc_store.debug_segments(n), **result.record,
                            "missing_predicted_vcc": pred is None and result.record["correct"] is False})
        writer.write_json(vcc_store.DEBUG, {"vccs": used, "images": records})
        writer.remove(vcc_store.DEBUG_PARTS)
        return writer.finish({"n_images": len(records), "misclassified": sum(r["correct"] is False for r in records),
                              "classes": sorted({v["class_name"].split(",")[0] for v in used.values()})})
