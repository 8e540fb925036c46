"""The static/dynamic analysis of one model, from Python: :func:`analyse` (methods.md section 1).

>>> from core.static_dynamic import StaticDynamicConfig, analyse
>>> result = analyse("r3d-motion", "synthetic:motion:12", StaticDynamicConfig(pairs=24, examples=0))
>>> result.layer_table()[-1]["pct_dynamic"]          # one row per layer, as the run's layers.json
>>> path = result.save("artifacts")                  # a run the dashboard shows

Resume: pass a checkpoint store (:mod:`core.checkpoint`). Pair features are saved per batch as
``parts/<tag>/batch-NNNN.npz`` and removal curves, step by step, as ``parts/<tag>/removal-<layer>.json``;
a rerun with the same store skips what is there. The precompute job passes its run writer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from core.artifacts import slug
from core.checkpoint import CheckpointStore, NullStore
from core.data.flow import flow_to_rgb, optical_flow
from core.data.images import ImageItem
from core.data.labels import label_index
from core.data.sources import load_videos
from core.data.videos import clips_from, fit_clip
from core.errors import DataError
from core.jsonsafe import num
from core.models import ModelBundle
from core.models.loading import load_model
from core.static_dynamic import removal as rm
from core.static_dynamic.config import StaticDynamicConfig
from core.static_dynamic.features import gap_features, to_batch
from core.static_dynamic.pairs import PairPlan, build_pair, plan_pairs
from core.static_dynamic.scores import LayerScores, few_pairs_warning, layer_warnings, score_layer
from core.static_dynamic.styles import STYLE_VERSION, stylize

T = TypeVar("T")
Progress = Callable[[Iterable[Any], str, int], Iterable[Any]]
"""``progress(items, description, total)``: iterates ``items`` (e.g. behind a progress bar)."""

EXAMPLE_SIDE = 192  # example clips are upscaled (nearest neighbour) to at least this many pixels


def _quiet(items: Iterable[T], _desc: str, _total: int) -> Iterator[T]:
    return iter(items)


def _batched(seq: Sequence[T], size: int) -> list[Sequence[T]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


# ----------------------------------------------------------------------------------------------
# Restyled clips, cached by content


class StyleCache:
    """Restyled (and optical-flow) versions of fitted clips, on disk under ``root`` by content hash
    (``None``: no cache)."""

    def __init__(self, root: Path | str | None) -> None:
        self.root = Path(root) if root else None

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


def load_user_styles(folder: str, items: Sequence[ImageItem], clips_per_video: int | None,
                     frames: int) -> dict[str, list[np.ndarray]]:
    """Pre-stylized copies: ``folder/<style>/`` mirrors the video folder (same file names)."""
    root = Path(folder)
    styles = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(styles) < 2:
        raise DataError(f"styles {folder}: expected a folder with one sub-folder per style (at least 2), "
                        "each holding restyled copies of the videos under the same file names")
    out: dict[str, list[np.ndarray]] = {}
    for style in styles:
        by_id = {c.id: c.frames for c in clips_from(root / style, frames=frames,
                                                    max_clips_per_video=clips_per_video)}
        missing = [it.id for it in items if it.id not in by_id]
        if missing:
            raise DataError(f"styles {folder}: style {style!r} has no copy of clip {missing[0]} "
                            f"({len(missing)} missing); the style folders must mirror the video folder")
        out[style] = [by_id[it.id] for it in items]
    return out


def as_items(videos: str | np.ndarray | Sequence[np.ndarray] | Sequence[ImageItem], bundle: ModelBundle,
             clips_per_video: int, labels: Sequence[str | None] | None = None
             ) -> tuple[list[ImageItem], dict[str, Any]]:
    """Clips as items, and a data spec: from a source spec (``demo``, a folder or file,
    ``synthetic:<task>[:<n>]``), an array ``(N, T, H, W, 3)`` uint8, a list of such clips, or items."""
    if isinstance(videos, str):
        return load_videos(videos, bundle, clips_per_video)
    seq = list(videos)
    if seq and all(isinstance(v, ImageItem) for v in seq):
        return seq, {"source": "in-memory", "n_clips": len(seq)}
    if labels is not None and len(labels) != len(seq):
        raise DataError(f"labels: {len(labels)} labels for {len(seq)} clips")
    items = []
    for i, clip in enumerate(seq):
        a = np.asarray(clip)
        if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise DataError(f"videos: clip {i} must be a uint8 array (T, H, W, 3), not {a.dtype} {a.shape}")
        items.append(ImageItem(f"clip-{i:04d}", a, "in-memory", None if labels is None else labels[i]))
    if not items:
        raise DataError("videos: no clips given")
    return items, {"source": "in-memory", "n_clips": len(items)}


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


def model_record(bundle: ModelBundle, label: str, layers: list[str]) -> dict[str, Any]:
    """The model's row of ``models.json``."""
    info = bundle.extra or {}
    metrics = info.get("metrics") or {}
    return {"label": label, "spec": bundle.spec, "description": bundle.description,
            "architecture": info.get("architecture"), "task": info.get("task"),
            "epoch": info.get("epoch"), "input": bundle.preprocessing.input,
            "val_accuracy": metrics.get("val_accuracy"), "layers": layers}


def pairs_key(bundle: ModelBundle) -> tuple[int, bool]:
    """Models with the same frame count and stream layout are scored on the same pairs."""
    return bundle.preprocessing.frames or 16, bundle.preprocessing.input == "video+flow"


def pairs_name(key: tuple[int, bool]) -> str:
    """The key of a pair plan list in ``pairs.json``."""
    return f"{key[0]}-frames{'-flow' if key[1] else ''}"


def plans_for(bundle: ModelBundle, n_clips: int, config: StaticDynamicConfig, styles: Sequence[str]
              ) -> list[PairPlan]:
    """The pairs of one model: the same for every model of the same :func:`pairs_key`."""
    frames, two_stream = pairs_key(bundle)
    return plan_pairs(n_clips, config.pairs, frames, list(styles), config.seed, two_stream)


# ----------------------------------------------------------------------------------------------
# Units of work (each saved to the checkpoint store)


def pair_features(store: CheckpointStore, tag: str, bundle: ModelBundle, layers: list[str], source: ClipSource,
                  plans: list[PairPlan], batch_size: int, progress: Progress = _quiet
                  ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """GAP'd features of both videos of every pair: ``{factor: {layer: (za, zb)}}``, each ``(N, C)``.
    Batches are saved as ``parts/<tag>/batch-NNNN.npz`` and reused when the store has them."""
    two_stream = bundle.preprocessing.input == "video+flow"
    batches = _batched(plans, batch_size)
    parts = []
    for b, batch in enumerate(progress(batches, f"{tag} pairs", len(batches))):
        name = f"parts/{tag}/batch-{b:04d}.npz"
        if not store.has(name):
            pairs = [build_pair(p, source.styled, source.flow if two_stream else None) for p in batch]
            fa, _ = gap_features(bundle, layers, to_batch([p[0] for p in pairs], bundle, bundle.device))
            fb, _ = gap_features(bundle, layers, to_batch([p[1] for p in pairs], bundle, bundle.device))
            arrays = {f"a{i}": fa[n] for i, n in enumerate(layers)} | {f"b{i}": fb[n] for i, n in enumerate(layers)}
            store.save_arrays(name, **arrays)
            parts.append(arrays)  # a NullStore keeps nothing: use the arrays just computed
        else:
            parts.append(store.load_arrays(name))
    factors = np.array([p.factor for p in plans])
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"static": {}, "dynamic": {}}
    for i, n in enumerate(layers):
        za = np.concatenate([p[f"a{i}"] for p in parts])
        zb = np.concatenate([p[f"b{i}"] for p in parts])
        for factor in out:
            out[factor][n] = (za[factors == factor], zb[factors == factor])
    return out


def score_model(feats: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], layers: list[str], lam: float
                ) -> list[LayerScores]:
    return [score_layer(*feats["static"][n], *feats["dynamic"][n], lam=lam) for n in layers]


@torch.inference_mode()
def _accuracy(bundle: ModelBundle, source: ClipSource, idx: list[int], labels: np.ndarray, batch_size: int) -> float:
    two_stream = bundle.preprocessing.input == "video+flow"
    correct = 0
    for chunk, lab in zip(_batched(idx, batch_size), _batched(labels, batch_size), strict=True):
        inputs = [(source.fitted(i), source.flow(i)) if two_stream else source.fitted(i) for i in chunk]
        logits = bundle(to_batch(inputs, bundle, bundle.device))
        correct += int((logits.argmax(-1).cpu().numpy() == np.asarray(lab)).sum())
    return correct / len(idx)


def removal_curves(store: CheckpointStore, tag: str, bundle: ModelBundle, layer: str, scores: LayerScores,
                   source: ClipSource, items: Sequence[ImageItem], fractions: Sequence[float], seeds: int,
                   batch_size: int, progress: Progress = _quiet) -> dict[str, Any]:
    """Accuracy with the top-k% static, dynamic or random units of ``layer`` zeroed, per fraction.
    Saved after every step as ``parts/<tag>/removal-<layer>.json``."""
    labels = [label_index(it.label, bundle.class_names) for it in items]
    idx = [i for i, lab in enumerate(labels) if lab is not None]
    if not idx:
        raise DataError(f"removal needs labelled videos whose labels are classes of {bundle.spec} "
                        "(sub-folders named after its classes, or synthetic:<task>)")
    y = np.array([labels[i] for i in idx])
    n_units = len(scores.s_static)
    orders = {"static": rm.ranking(scores.s_static), "dynamic": rm.ranking(scores.s_dynamic)}
    for s in range(seeds):
        orders[f"random{s}"] = np.random.default_rng([s, 7]).permutation(n_units)
    name = f"parts/{tag}/removal-{slug(layer, 60)}.json"
    done: dict[str, list[float]] = store.load_json(name) if store.has(name) else {}
    jobs = [(k, f) for k in orders for f in range(len(fractions)) if len(done.get(k, [])) <= f]
    for k, f in progress(jobs, f"{tag} removal {layer}", len(jobs)):
        with rm.zeroed_units(bundle, layer, rm.top_fraction(orders[k], fractions[f])):
            done.setdefault(k, []).append(_accuracy(bundle, source, idx, y, batch_size))
        store.save_json(name, done)
    rand = np.array([done[f"random{s}"] for s in range(seeds)])
    curve = {"static": done["static"], "dynamic": done["dynamic"], "random_mean": rand.mean(0).tolist(),
             "random_std": rand.std(0).tolist(), "random_seeds": rand.tolist()}
    curve["auc"] = {k: rm.auc(fractions, curve[v]) for k, v in
                    (("static", "static"), ("dynamic", "dynamic"), ("random", "random_mean"))}
    return {"layer": layer, "n_units": n_units, **curve}


def removal_layers(requested: Sequence[str] | None, layers: list[str], spec: str) -> list[str]:
    """The layers of one model to run removal on: the requested ones it has (several models may
    share one request), or its last analysed layer when none is requested."""
    if not requested:
        return [layers[-1]]
    mine = [n for n in requested if n in layers]
    if not mine:
        warnings.warn(f"removal_layers: {spec} has none of {', '.join(requested)}; no removal curves for it",
                      stacklevel=2)
    return mine


def labelled(items: Sequence[ImageItem], bundle: ModelBundle) -> int:
    """How many clips are labelled with a class of ``bundle``."""
    return sum(label_index(it.label, bundle.class_names) is not None for it in items)


# ----------------------------------------------------------------------------------------------
# Example pairs


def _display(clip: np.ndarray) -> np.ndarray:
    import cv2

    h, w = clip.shape[1:3]
    k = max(1, -(-EXAMPLE_SIDE // min(h, w)))
    if k == 1:
        return clip
    return np.stack([cv2.resize(f, (w * k, h * k), interpolation=cv2.INTER_NEAREST) for f in clip])


def example_pairs(source: ClipSource, plans: list[PairPlan], items: Sequence[ImageItem], n: int
                  ) -> list[dict[str, Any]]:
    """The first ``n`` clips' static and dynamic pairs, each ``{video, caption, styles, clips}`` with
    ``clips`` ``{name: (T, H, W, 3) uint8}`` upscaled for display (written as ``examples/*.mp4``)."""
    two_stream = source.bundle.preprocessing.input == "video+flow"
    static = {p.clip: p for p in plans if p.factor == "static"}
    dynamic = {p.clip: p for p in plans if p.factor == "dynamic"}
    out = []
    for clip in [c for c in static if c in dynamic][:n]:
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
        out.append({"video": items[clip].id, "caption": f"{items[clip].id}: {what}",
                    "styles": {"static": sp.style_a, "style_a": dp.style_a, "style_b": dp.style_b},
                    "clips": {k: _display(v) for k, v in videos.items()}})
    return out


# ----------------------------------------------------------------------------------------------
# Results


@dataclass
class ModelResult:
    """One model's part of an analysis: its layers' scores and removal curves."""

    label: str
    record: dict[str, Any]  # models.json row
    layers: list[str]
    scores: list[LayerScores]
    removal: list[dict[str, Any]] = field(default_factory=list)  # {layer, n_units, static, dynamic, random_*, auc}


@dataclass
class StaticDynamicResult:
    """A static/dynamic analysis of one or several models on the same pairs.

    ``models`` per model the layer scores (:class:`LayerScores`, per-unit arrays ``(C,)``);
    ``pairs`` every pair's random choices by :func:`pairs_name`; ``examples`` example pairs (with
    their ``clips`` in memory until saved); ``dynamics`` the scores over training checkpoints
    (set by the job); ``warnings`` degenerate-result warnings ``{code, message, setting, layer,
    figure}``.
    """

    config: StaticDynamicConfig | None  # None: loaded from a run whose settings are not a valid config
    models: list[ModelResult]
    pairs: dict[str, list[dict[str, Any]]]
    data: dict[str, Any]
    n_clips: int
    n_labelled: int
    styles: list[str]
    model_spec: Any = None  # the manifest's model field
    manifest_config: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    dynamics: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def layer_table(self) -> list[dict[str, Any]]:
        """One row per model and layer (``layers.json``): model, layer, depth, the layer's
        scores, percentages and unit counts, and lambda."""
        lam = self.lam
        return [{"model": m.label, "layer": layer, "depth": depth, **sc.record(), "lambda": lam}
                for m in self.models for depth, (layer, sc) in enumerate(zip(m.layers, m.scores, strict=True))]

    @property
    def lam(self) -> float:
        return self.config.lam if self.config is not None else float(self.manifest_config.get("lambda", 0.5))

    def scores(self, model: str | None = None) -> dict[str, LayerScores]:
        """``{layer: scores}`` of ``model`` (a label; default the first model)."""
        m = self.models[0] if model is None else next((m for m in self.models if m.label == model), None)
        if m is None:
            raise KeyError(f"no model {model!r}; models: {', '.join(x.label for x in self.models)}")
        return dict(zip(m.layers, m.scores, strict=True))

    def removal_curves(self) -> list[dict[str, Any]]:
        """Every removal curve with its model's label (``removal.json``'s ``curves``)."""
        return [{"model": m.label, **c} for m in self.models for c in m.removal]

    def summary(self) -> dict[str, Any]:
        """The run manifest's summary."""
        final = {m.label: {"layer": m.layers[-1], **{k: num(round(getattr(m.scores[-1], k), 4)) for k in
                           ("pct_static", "pct_dynamic", "S_static", "S_dynamic")}} for m in self.models}
        pairs = self.config.pairs if self.config is not None else self.manifest_config.get("pairs")
        return {"models": [m.label for m in self.models], "pairs": pairs, "lambda": self.lam,
                "n_clips": self.n_clips, "final_layer": final}

    def save(self, target: Any, *, run_id: str | None = None, overwrite: bool = False) -> Path:
        """Write the run: into an open :class:`core.artifacts.RunWriter` (returns its folder; the
        caller finishes it), or under the artifact root ``target`` (returns the finished run folder
        ``<target>/static-dynamic/<run_id>``)."""
        from core.static_dynamic import store

        return store.save(self, target, run_id=run_id, overwrite=overwrite)

    @classmethod
    def load(cls, run_dir: str | Path) -> StaticDynamicResult:
        """Read a finished ``static-dynamic`` run back (checked against its schema)."""
        from core.static_dynamic import store

        return store.load(run_dir)

    @classmethod
    def merge(cls, results: Sequence[StaticDynamicResult]) -> StaticDynamicResult:
        """Several models' results on the same clips as one run: labels made unique, pairs joined,
        layer warnings of the same code and layer joined into one (prefixed with the model)."""
        if not results:
            raise ValueError("nothing to merge")
        first = results[0]
        if len(results) == 1:
            return first
        taken: set[str] = set()
        models, pairs, layers = [], {}, {}
        merged = [w for w in first.warnings if w.get("layer") is None]
        by_key: dict[tuple[str, str | None], list[tuple[str, dict[str, Any]]]] = {}
        for r in results:
            labels = []
            for m in r.models:
                label = model_label_from(m.label, taken)
                taken.add(label)
                labels.append(label)
                models.append(dataclasses.replace(m, label=label, record={**m.record, "label": label}))
            pairs.update(r.pairs)
            layers.update(r.manifest_config.get("layers") or {})
            for w in r.warnings:  # a result of analyse() holds one model
                if w.get("layer") is not None:
                    by_key.setdefault((w["code"], w["layer"]), []).append((labels[0], w))
        for found in by_key.values():
            merged.append({**found[0][1], "message": "; ".join(f"{lab}: {w['message']}" for lab, w in found)})
        return dataclasses.replace(
            first, models=models, pairs=pairs, examples=[e for r in results for e in r.examples], warnings=merged,
            manifest_config={**first.manifest_config, "layers": layers},
            model_spec={"spec": " + ".join(m.record["spec"] for m in models),
                        "models": [r.model_spec for r in results]})


def model_label_from(label: str, taken: set[str]) -> str:
    base, k = label, 2
    while label in taken:
        label, k = f"{base}-{k}", k + 1
    return label


# ----------------------------------------------------------------------------------------------
# The entry point


def _default_tag(bundle: ModelBundle, layers: list[str], config: StaticDynamicConfig, styles: Sequence[str],
                 items: Sequence[ImageItem]) -> str:
    """A store prefix that changes with everything the pair features depend on, so one store can hold
    several analyses."""
    h = hashlib.sha256(repr((bundle.spec, layers, config.pairs, config.seed, config.batch_size, list(styles),
                             len(items))).encode())
    for it in items:
        h.update(it.id.encode())
        h.update(np.ascontiguousarray(it.image).tobytes())
    return f"{slug(bundle.spec, 40)}-{h.hexdigest()[:12]}"


def analyse(model: str | ModelBundle, videos: str | np.ndarray | Sequence[np.ndarray] | Sequence[ImageItem],
            config: StaticDynamicConfig | None = None, store: CheckpointStore | None = None,
            progress: Progress | None = None, *, device: str | torch.device = "auto",
            labels: Sequence[str | None] | None = None, cache_dir: str | Path | None = None,
            tag: str | None = None, user_styles: dict[str, list[np.ndarray]] | None = None,
            label: str | None = None) -> StaticDynamicResult:
    """Static, dynamic, joint and residual units of one video model.

    ``model``: a spec (``r3d-motion``, ``ckpt:...``, ``py:file.py:make``) or a loaded bundle;
    ``videos``: a source spec (``demo``, a folder or file, ``synthetic:<task>[:<n>]``), an array
    ``(N, T, H, W, 3)`` uint8 or a list of clips (``labels``: class names per clip, for removal),
    or items. ``store`` (default :class:`core.checkpoint.NullStore`) keeps finished units of work
    under ``parts/<tag>/`` (``tag`` defaults to a hash of the model, settings and clips). Restyled
    clips are cached under ``cache_dir`` (default: none). ``user_styles`` are pre-loaded copies of
    ``config.styles_folder`` (a job analysing several models loads them once).
    """
    config = config or StaticDynamicConfig()
    store = store if store is not None else NullStore()
    progress = progress or _quiet
    bundle, layers = load_model(model, device, config.layers)
    if bundle.preprocessing.input == "image":
        raise DataError(f"{bundle.spec} is an image model{bundle.input_hint()}; the static/dynamic analysis "
                        "needs a video model")
    items, data = as_items(videos, bundle, config.clips_per_video, labels)
    styles = config.style_names
    if config.styles_folder:
        if user_styles is None:
            user_styles = load_user_styles(config.styles_folder, items, config.clips_per_video,
                                           bundle.preprocessing.frames or 16)
        styles = list(user_styles)
    n_labelled = labelled(items, bundle)
    if config.removal and not n_labelled:
        raise DataError("removal needs labelled videos whose labels are classes of the model "
                        "(sub-folders named after its classes, or synthetic:<task>)")
    tag = tag or _default_tag(bundle, layers, config, styles, items)
    source = ClipSource(bundle, [it.image for it in items], StyleCache(cache_dir), user_styles)
    plans = plans_for(bundle, len(items), config, styles)
    feats = pair_features(store, tag, bundle, layers, source, plans, config.batch_size, progress)
    scored = score_model(feats, layers, config.lam)
    label = label or model_label(bundle, set())
    few = few_pairs_warning(config.pairs, config.lam)
    found: list[dict[str, Any]] = [few] if few else []
    for layer, sc in zip(layers, scored, strict=True):
        found.extend(layer_warnings(layer, sc))
    curves = []
    if config.removal:
        for layer in removal_layers(config.removal_layers, layers, bundle.spec):
            curves.append(removal_curves(store, tag, bundle, layer, scored[layers.index(layer)], source, items,
                                         config.removal_fractions, config.removal_seeds, config.batch_size,
                                         progress))
    examples = example_pairs(source, plans, items, config.examples) if config.examples else []
    return StaticDynamicResult(
        config=config, models=[ModelResult(label, model_record(bundle, label, layers), layers, scored, curves)],
        pairs={pairs_name(pairs_key(bundle)): [p.record() for p in plans]}, data=data, n_clips=len(items),
        n_labelled=n_labelled, styles=styles, model_spec=bundle.describe(),
        manifest_config=config.manifest(styles, {bundle.spec: layers}, []), examples=examples, warnings=found)
