"""`precompute static-dynamic`: static and dynamic units of video models (chapter 3, methods.md section 1).

For every model (``--model`` may be repeated: the models are scored on the same pairs) and
layer, GAP'd features of ``--pairs`` static and ``--pairs`` dynamic pairs give the layer scores,
the softmax percentages and the per-unit scores and categories (:mod:`core.static_dynamic.scores`).
Options add neuron removal (``--removal``), the metric over training checkpoints
(``--checkpoints``) and example pairs as videos (``--examples``).

Run layout (kind ``static-dynamic``)::

    models.json    [{label, spec, description, architecture, task, input, val_accuracy, layers}]
    layers.json    [{model, layer, depth, n_units, S_static, S_dynamic, pct_static, pct_dynamic,
                     pct_identical, n_static, n_dynamic, n_joint, n_residual, n_dead, lambda}]
    units.npz      s_static_<i>, s_dynamic_<i>: per-unit scores (NaN = dead) of row i of layers.json
    pairs.json     every pair's random choices (clip, styles, frame order or flow jitter)
    removal.json   (--removal) {metric, n_videos, fractions, seeds, curves: [{model, layer, static,
                    dynamic, random_mean, random_std, auc}]}
    dynamics.json  (--checkpoints) {checkpoints: [{label, epoch, val_accuracy}], records: [...]}
    examples.json  (--examples) [{video, caption, files: {original, shuffled, style_a, style_b}}]
    examples/*.mp4 the example pairs as H.264 clips

Restyled clips are cached under ``--cache-dir`` by content hash (a second analysis of the same
videos does not restyle them again). Features are saved per model and batch under ``parts/``: a
killed run resumes at the next unfinished batch.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.artifacts import RunWriter, slug
from core.data.flow import flow_to_rgb, optical_flow
from core.data.images import ImageItem
from core.data.labels import label_index
from core.data.videos import clips_from, fit_clip, write_video
from core.errors import DataError, UserError
from core.models import ModelBundle
from core.static_dynamic import removal as rm
from core.static_dynamic.features import gap_features, to_batch
from core.static_dynamic.pairs import PairPlan, build_pair, plan_pairs
from core.static_dynamic.scores import few_pairs_warning, layer_warnings, score_layer
from core.static_dynamic.styles import STYLE_VERSION, STYLES, stylize
from precompute.common import batched, load_model, progress, resolve_device, seed_everything
from precompute.predict import load_videos

EXAMPLE_SIDE = 192  # example clips are upscaled (nearest neighbour) to at least this many pixels


# ----------------------------------------------------------------------------------------------
# Restyled clips, cached by content


class StyleCache:
    """Restyled (and optical-flow) versions of fitted clips, on disk under ``root`` by content hash."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def get(self, clip: np.ndarray, style: str, make: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        if self.root is None:
            return make(clip)
        h = hashlib.sha256(f"{clip.shape}{clip.dtype}{style}v{STYLE_VERSION}".encode())
        h.update(np.ascontiguousarray(clip).tobytes())
        key = h.hexdigest()
        path = self.root / key[:2] / f"{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return z["clip"]
            except Exception as e:  # a damaged entry (BadZipFile, truncation, ...) is rebuilt below
                warnings.warn(f"rebuilding a damaged style cache entry {path}: {type(e).__name__}: {e}", stacklevel=2)
        out = make(clip)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, clip=out)
        os.replace(tmp, path)
        return out


@dataclass
class ClipSource:
    """The analysed clips of one model: fitted to its input, restyled on demand."""

    bundle: ModelBundle
    clips: list[np.ndarray]  # raw (T, H, W, 3) uint8
    cache: StyleCache
    user_styles: dict[str, list[np.ndarray]] | None = None  # style -> raw restyled clips (same order)
    _fitted: dict[int, np.ndarray] = field(default_factory=dict)
    _flow: dict[int, np.ndarray] = field(default_factory=dict)  # removal reads every clip's flow per condition

    def fitted(self, i: int) -> np.ndarray:
        if i not in self._fitted:
            self._fitted[i] = fit_clip(self.clips[i], self.bundle.preprocessing)
        return self._fitted[i]

    def styled(self, i: int, style: str) -> np.ndarray:
        if self.user_styles is not None:
            return fit_clip(self.user_styles[style][i], self.bundle.preprocessing)
        return self.cache.get(self.fitted(i), style, lambda c: stylize(c, style))

    def flow(self, i: int) -> np.ndarray:
        if i not in self._flow:
            self._flow[i] = self.cache.get(self.fitted(i), "flow", lambda c: flow_to_rgb(optical_flow(c)))
        return self._flow[i]


# ----------------------------------------------------------------------------------------------
# Inputs


def load_user_styles(folder: str, items: list[ImageItem], clips_per_video: int | None,
                     frames: int) -> dict[str, list[np.ndarray]]:
    """Pre-stylized copies: ``folder/<style>/`` mirrors the video folder (same file names)."""
    root = Path(folder)
    styles = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(styles) < 2:
        raise DataError(f"--styles {folder}: expected a folder with one sub-folder per style (at least 2), "
                        "each holding restyled copies of the videos under the same file names")
    out: dict[str, list[np.ndarray]] = {}
    for style in styles:
        by_id = {c.id: c.frames for c in clips_from(root / style, frames=frames,
                                                    max_clips_per_video=clips_per_video)}
        missing = [it.id for it in items if it.id not in by_id]
        if missing:
            raise DataError(f"--styles {folder}: style {style!r} has no copy of clip {missing[0]} "
                            f"({len(missing)} missing); the style folders must mirror the video folder")
        out[style] = [by_id[it.id] for it in items]
    return out


def parse_styles(value: str | Sequence[str] | None) -> tuple[list[str], str | None]:
    """``--styles``: shipped style names (comma list, default all four) or a folder of the user's."""
    if not value:
        return list(STYLES), None
    parts = [v for item in ([value] if isinstance(value, str) else value) for v in str(item).split(",") if v]
    if len(parts) == 1 and Path(parts[0]).is_dir():
        return [], parts[0]
    unknown = [p for p in parts if p not in STYLES]
    if unknown:
        raise UserError(f"--styles: unknown style {unknown[0]!r}; use some of {', '.join(STYLES)} "
                        "or a folder of pre-stylized copies")
    if len(parts) < 2:
        raise UserError("--styles: dynamic pairs need at least two styles")
    return parts, None


def expand_checkpoints(values: Sequence[str]) -> list[str]:
    """``--checkpoints``: specs, checkpoint folders, or the folder of one training run (its
    ``epochs/epoch-NN`` folders in epoch order)."""
    specs: list[str] = []
    for v in values:
        p = Path(v)
        epochs = sorted((p / "epochs").glob("epoch-*")) if p.is_dir() else []
        if not epochs and p.is_dir():
            epochs = sorted(p.glob("epoch-*"))
        if epochs:
            specs.extend(f"ckpt:{e}" for e in epochs if (e / "model.json").is_file())
        elif p.is_dir():
            specs.append(f"ckpt:{p}")
        else:
            specs.append(v)
    return specs


def model_label(bundle: ModelBundle, taken: set[str]) -> str:
    """A short unique label: the zoo name, a checkpoint folder's name, or the spec."""
    spec = bundle.spec.split("#")[0]
    label = Path(spec.split(":", 1)[1]).name if spec.startswith(("ckpt:", "torchscript:", "hf:")) else spec
    label = label or spec
    base, k = label, 2
    while label in taken:
        label, k = f"{base}-{k}", k + 1
    taken.add(label)
    return label


def _model_record(bundle: ModelBundle, label: str, layers: list[str]) -> dict[str, Any]:
    info = bundle.extra or {}
    metrics = info.get("metrics") or {}
    return {"label": label, "spec": bundle.spec, "description": bundle.description,
            "architecture": info.get("architecture"), "task": info.get("task"),
            "epoch": info.get("epoch"), "input": bundle.preprocessing.input,
            "val_accuracy": metrics.get("val_accuracy"), "layers": layers}


# ----------------------------------------------------------------------------------------------
# Scoring


def pair_features(writer: RunWriter, tag: str, bundle: ModelBundle, layers: list[str], source: ClipSource,
                  plans: list[PairPlan], batch_size: int, device: torch.device
                  ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """GAP'd features of both videos of every pair: ``{factor: {layer: (za, zb)}}``, each ``(N, C)``.
    Batches are saved as ``parts/<tag>/batch-NNNN.npz`` and reused on resume."""
    two_stream = bundle.preprocessing.input == "video+flow"
    batches = batched(plans, batch_size)
    parts = []
    for b, batch in enumerate(progress(batches, f"{tag} pairs", len(batches))):
        name = f"parts/{tag}/batch-{b:04d}.npz"
        if not writer.has(name):
            pairs = [build_pair(p, source.styled, source.flow if two_stream else None) for p in batch]
            fa, _ = gap_features(bundle, layers, to_batch([p[0] for p in pairs], bundle, device))
            fb, _ = gap_features(bundle, layers, to_batch([p[1] for p in pairs], bundle, device))
            writer.write_npz(name, **{f"a{i}": fa[n] for i, n in enumerate(layers)},
                             **{f"b{i}": fb[n] for i, n in enumerate(layers)})
        parts.append(writer.load_npz(name))
    factors = np.array([p.factor for p in plans])
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"static": {}, "dynamic": {}}
    for i, n in enumerate(layers):
        za = np.concatenate([p[f"a{i}"] for p in parts])
        zb = np.concatenate([p[f"b{i}"] for p in parts])
        for factor in out:
            out[factor][n] = (za[factors == factor], zb[factors == factor])
    return out


def score_model(feats: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], layers: list[str], lam: float
                ) -> list[Any]:
    return [score_layer(*feats["static"][n], *feats["dynamic"][n], lam=lam) for n in layers]


# ----------------------------------------------------------------------------------------------
# Neuron removal


@torch.inference_mode()
def _accuracy(bundle: ModelBundle, source: ClipSource, idx: list[int], labels: np.ndarray, batch_size: int,
              device: torch.device) -> float:
    two_stream = bundle.preprocessing.input == "video+flow"
    correct = 0
    for chunk, lab in zip(batched(idx, batch_size), batched(labels, batch_size), strict=True):
        inputs = [(source.fitted(i), source.flow(i)) if two_stream else source.fitted(i) for i in chunk]
        logits = bundle(to_batch(inputs, bundle, device))
        correct += int((logits.argmax(-1).cpu().numpy() == np.asarray(lab)).sum())
    return correct / len(idx)


def removal_curves(writer: RunWriter, tag: str, bundle: ModelBundle, layer: str, scores: Any, source: ClipSource,
                   items: list[ImageItem], fractions: Sequence[float], seeds: int, batch_size: int,
                   device: torch.device) -> dict[str, Any]:
    """Accuracy with the top-k% static, dynamic or random units of ``layer`` zeroed, per fraction."""
    labels = [label_index(it.label, bundle.class_names) for it in items]
    idx = [i for i, lab in enumerate(labels) if lab is not None]
    if not idx:
        raise DataError(f"--removal needs labelled videos whose labels are classes of {bundle.spec} "
                        "(sub-folders named after its classes, or synthetic:<task>)")
    y = np.array([labels[i] for i in idx])
    n_units = len(scores.s_static)
    orders = {"static": rm.ranking(scores.s_static), "dynamic": rm.ranking(scores.s_dynamic)}
    for s in range(seeds):
        orders[f"random{s}"] = np.random.default_rng([s, 7]).permutation(n_units)
    name = f"parts/{tag}/removal-{slug(layer, 60)}.json"
    done: dict[str, list[float]] = writer.read_json(name) if writer.has(name) else {}
    jobs = [(k, f) for k in orders for f in range(len(fractions)) if len(done.get(k, [])) <= f]
    for k, f in progress(jobs, f"{tag} removal {layer}", len(jobs)):
        with rm.zeroed_units(bundle, layer, rm.top_fraction(orders[k], fractions[f])):
            done.setdefault(k, []).append(_accuracy(bundle, source, idx, y, batch_size, device))
        writer.write_json(name, done)
    rand = np.array([done[f"random{s}"] for s in range(seeds)])
    curve = {"static": done["static"], "dynamic": done["dynamic"], "random_mean": rand.mean(0).tolist(),
             "random_std": rand.std(0).tolist(), "random_seeds": rand.tolist()}
    curve["auc"] = {k: rm.auc(fractions, curve[v]) for k, v in
                    (("static", "static"), ("dynamic", "dynamic"), ("random", "random_mean"))}
    return {"layer": layer, "n_units": n_units, **curve}


# ----------------------------------------------------------------------------------------------
# Example pairs


def _display(clip: np.ndarray) -> np.ndarray:
    import cv2

    h, w = clip.shape[1:3]
    k = max(1, -(-EXAMPLE_SIDE // min(h, w)))
    if k == 1:
        return clip
    return np.stack([cv2.resize(f, (w * k, h * k), interpolation=cv2.INTER_NEAREST) for f in clip])


def write_examples(writer: RunWriter, source: ClipSource, plans: list[PairPlan], items: list[ImageItem],
                   n: int) -> list[dict[str, Any]]:
    """The first ``n`` clips' static and dynamic pairs as H.264 clips under ``examples/``."""
    two_stream = source.bundle.preprocessing.input == "video+flow"
    static = {p.clip: p for p in plans if p.factor == "static"}
    dynamic = {p.clip: p for p in plans if p.factor == "dynamic"}
    fps = 8.0
    out = []
    for k, clip in enumerate([c for c in static if c in dynamic][:n]):
        sp, dp = static[clip], dynamic[clip]
        s1, s2 = build_pair(sp, source.styled, source.flow if two_stream else None)
        d1, d2 = build_pair(dp, source.styled, source.flow if two_stream else None)
        videos = {"original": source.fitted(clip)}
        if two_stream:
            videos.update(style_a=d1[0], style_b=d2[0], flow=s1[1], flow_jittered=s2[1])
            what = (f"static pair: the {sp.style_a} clip with its flow recoloured (hue {sp.hue_shift:+.0f} deg, "
                    f"saturation x{sp.saturation_scale:.2f}); dynamic pair: {dp.style_a} vs {dp.style_b} "
                    "with the same flow")
        else:
            videos.update(static=s1, shuffled=s2, style_a=d1, style_b=d2)
            what = (f"static pair: {sp.style_a} in order vs its frames in the order {list(sp.perm or [])}; "
                    f"dynamic pair: {dp.style_a} vs {dp.style_b}")
        files = {}
        for key, frames in videos.items():
            name = f"examples/{k}-{key}.mp4"
            if not writer.has(name):
                with writer.writing(name) as tmp:  # a full disk or a kill leaves no half-written clip
                    write_video(tmp, _display(frames), fps=fps)
            files[key] = name
        out.append({"video": items[clip].id, "caption": f"{items[clip].id}: {what}", "files": files,
                    "styles": {"static": sp.style_a, "style_a": dp.style_a, "style_b": dp.style_b}})
    return out


# ----------------------------------------------------------------------------------------------
# The job


def removal_layers(requested: Sequence[str] | None, layers: list[str], spec: str) -> list[str]:
    """The layers of one model to run removal on: the requested ones it has (several models may
    share one request), or its last analysed layer when none is requested."""
    if not requested:
        return [layers[-1]]
    mine = [n for n in requested if n in layers]
    if not mine:
        warnings.warn(f"--removal-layers: {spec} has none of {', '.join(requested)}; no removal curves for it",
                      stacklevel=2)
    return mine


def _epoch_of(bundle: ModelBundle, spec: str, index: int) -> int:
    epoch = (bundle.extra or {}).get("epoch")
    if isinstance(epoch, int):
        return epoch
    m = re.search(r"epoch[-_]?(\d+)", spec)
    return int(m.group(1)) if m else index + 1


def run(args: Any) -> Path:
    seed_everything(args.seed)
    device = resolve_device(args.device)
    specs = args.model if isinstance(args.model, list) else [args.model]
    loaded = [load_model(spec, device, args.layers) for spec in specs]
    for bundle, _ in loaded:
        if bundle.preprocessing.input == "image":
            raise DataError(f"{bundle.spec} is an image model{bundle.input_hint()}; the static/dynamic analysis "
                            "needs a video model")
    styles, styles_folder = parse_styles(args.styles)
    first = loaded[0][0]
    items, data_spec = load_videos(args.videos or "demo", first, args.clips_per_video)
    clips = [it.image for it in items]
    user_styles = None
    if styles_folder:
        user_styles = load_user_styles(styles_folder, items, args.clips_per_video, first.preprocessing.frames or 16)
        styles = list(user_styles)
    removable = {b.spec for b, _ in loaded if any(label_index(it.label, b.class_names) is not None for it in items)}
    if args.removal and not removable:
        raise DataError("--removal needs labelled videos whose labels are classes of the model "
                        "(sub-folders named after its classes, or synthetic:<task>)")
    if args.removal and len(removable) < len(loaded):
        skipped = ", ".join(b.spec for b, _ in loaded if b.spec not in removable)
        warnings.warn(f"--removal: no video is labelled with a class of {skipped}; no removal curves for it",
                      stacklevel=2)
    if args.removal and args.removal_layers:
        known = {n for _, names in loaded for n in names}
        unknown = [n for n in args.removal_layers if n not in known]
        if unknown:
            raise UserError(f"--removal-layers {unknown[0]}: not among the analysed layers of any model "
                            f"({', '.join(sorted(known))})")
    checkpoints = expand_checkpoints(args.checkpoints or [])
    cache = StyleCache(Path(args.cache_dir) / "styles" if args.cache_dir else None)
    fractions = [float(f) for f in (args.removal_fractions or rm.DEFAULT_FRACTIONS)]
    config = {"pairs": args.pairs, "lambda": args.lam, "styles": styles, "styles_folder": styles_folder,
              "layers": {b.spec: names for b, names in loaded}, "batch_size": args.batch_size, "seed": args.seed,
              "removal": bool(args.removal), "removal_layers": args.removal_layers,
              "removal_fractions": fractions, "removal_seeds": args.removal_seeds,
              "checkpoints": checkpoints, "examples": args.examples, "style_version": STYLE_VERSION}
    model_field = first.describe() if len(loaded) == 1 else {"spec": " + ".join(specs),
                                                             "models": [b.describe() for b, _ in loaded]}
    with RunWriter(args.out, "static-dynamic", model=model_field, data=data_spec, config=config,
                   run_id=args.run_id, overwrite=args.overwrite) as writer:
        plans_by_kind: dict[tuple[int, bool], list[PairPlan]] = {}

        def plans_for(bundle: ModelBundle) -> list[PairPlan]:
            key = (bundle.preprocessing.frames or 16, bundle.preprocessing.input == "video+flow")
            if key not in plans_by_kind:
                plans_by_kind[key] = plan_pairs(len(clips), args.pairs, key[0], styles, args.seed, key[1])
            return plans_by_kind[key]

        models, records, units, curves = [], [], {}, []
        taken: set[str] = set()
        summary_final: dict[str, Any] = {}
        few = few_pairs_warning(args.pairs, args.lam)
        if few:
            writer.warn(few["code"], few["message"], setting=few["setting"], layer=few["layer"], figure=few["figure"])
        layer_warns: dict[tuple[str, str | None], list[tuple[str, dict[str, Any]]]] = {}
        for m, (bundle, layers) in enumerate(loaded):
            label = model_label(bundle, taken)
            source = ClipSource(bundle, clips, cache, user_styles)
            feats = pair_features(writer, f"m{m}", bundle, layers, source, plans_for(bundle), args.batch_size, device)
            scored = score_model(feats, layers, args.lam)
            models.append(_model_record(bundle, label, layers))
            for depth, (layer, sc) in enumerate(zip(layers, scored, strict=True)):
                units[f"s_static_{len(records)}"] = sc.s_static
                units[f"s_dynamic_{len(records)}"] = sc.s_dynamic
                records.append({"model": label, "layer": layer, "depth": depth, **sc.record(), "lambda": args.lam})
                for w in layer_warnings(layer, sc):
                    found = layer_warns.setdefault((w["code"], w["layer"]), [])
                    found.append((label, w))
                    message = "; ".join(f"{lab}: {x['message']}" for lab, x in found) if len(loaded) > 1 \
                        else w["message"]
                    writer.warn(w["code"], message, setting=w["setting"], layer=w["layer"], figure=w["figure"])
            summary_final[label] = {"layer": layers[-1], **{k: round(getattr(scored[-1], k), 4) for k in
                                    ("pct_static", "pct_dynamic", "S_static", "S_dynamic")}}
            if args.removal and bundle.spec in removable:
                for layer in removal_layers(args.removal_layers, layers, bundle.spec):
                    curve = removal_curves(writer, f"m{m}", bundle, layer, scored[layers.index(layer)], source,
                                           items, fractions, args.removal_seeds, args.batch_size, device)
                    curves.append({"model": label, **curve})
            if m == 0 and args.examples:
                writer.write_json("examples.json", write_examples(writer, source, plans_for(bundle), items,
                                                                  args.examples))
        dynamics = None
        if checkpoints:
            dynamics = {"checkpoints": [], "records": []}
            for c, spec in enumerate(progress(checkpoints, "checkpoints", len(checkpoints))):
                bundle, layers = load_model(spec, device, args.layers)
                label = f"epoch {_epoch_of(bundle, spec, c)}"
                source = ClipSource(bundle, clips, cache, user_styles)
                feats = pair_features(writer, f"c{c}", bundle, layers, source, plans_for(bundle), args.batch_size,
                                      device)
                metrics = (bundle.extra or {}).get("metrics") or {}
                dynamics["checkpoints"].append({"label": label, "spec": spec, "epoch": _epoch_of(bundle, spec, c),
                                                "val_accuracy": metrics.get("val_accuracy")})
                for layer, sc in zip(layers, score_model(feats, layers, args.lam), strict=True):
                    dynamics["records"].append({"checkpoint": label, "epoch": _epoch_of(bundle, spec, c),
                                                "layer": layer, **sc.record()})
        writer.write_json("models.json", models)
        writer.write_json("layers.json", records)
        writer.write_npz("units.npz", **units)
        writer.write_json("pairs.json", {f"{frames}-frames{'-flow' if flow else ''}": [p.record() for p in v]
                                         for (frames, flow), v in plans_by_kind.items()})
        if curves:
            writer.write_json("removal.json", {"metric": "top-1 accuracy", "n_videos": _labelled(items, loaded),
                                               "fractions": fractions, "seeds": args.removal_seeds,
                                               "curves": curves})
        if dynamics:
            writer.write_json("dynamics.json", dynamics)
        writer.remove("parts")
        return writer.finish({"models": [m["label"] for m in models], "pairs": args.pairs, "lambda": args.lam,
                              "n_clips": len(clips), "final_layer": summary_final})


def _labelled(items: list[ImageItem], loaded: list[tuple[ModelBundle, list[str]]]) -> int:
    names = loaded[0][0].class_names
    return sum(label_index(it.label, names) is not None for it in items)
