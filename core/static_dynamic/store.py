"""The on-disk layout of a ``static-dynamic`` run: the one place that knows its file names.

Run layout (kind ``static-dynamic``)::

    models.json    [{label, spec, description, architecture, task, epoch, input, val_accuracy, layers}]
    layers.json    [{model, layer, depth, n_units, S_static, S_dynamic, pct_static, pct_dynamic,
                     pct_identical, n_static, n_dynamic, n_joint, n_residual, n_dead, lambda}]
                   (scores and percentages null for a layer with no live unit: NaN in memory)
    units.npz      s_static_<i>, s_dynamic_<i>: per-unit scores (NaN = dead) of row i of layers.json
    pairs.json     every pair's random choices (clip, styles, frame order or flow jitter) by frame count
    removal.json   (removal) {metric, n_videos, fractions, seeds, curves: [{model, layer, n_units, static,
                    dynamic, random_mean, random_std, random_seeds, auc}]}
    dynamics.json  (checkpoints) {checkpoints: [{label, spec, epoch, val_accuracy}], records: [...]}
    examples.json  (examples) [{video, caption, styles, files: {original, shuffled, style_a, style_b}}]
    examples/*.mp4 the example pairs as H.264 clips

:func:`save` writes a :class:`~core.static_dynamic.analysis.StaticDynamicResult` with a
:class:`core.artifacts.RunWriter`; :func:`load` reads a finished run back through
:func:`core.artifacts.open_run` (every JSON file checked against :mod:`core.run_schema`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.artifacts import Run, RunWriter, open_run
from core.data.videos import write_video
from core.errors import ConfigError, RunError
from core.jsonsafe import nan_to_null, null_to_nan

if TYPE_CHECKING:
    from core.static_dynamic.analysis import StaticDynamicResult

KIND = "static-dynamic"
MODELS = "models.json"
LAYERS = "layers.json"
UNITS = "units.npz"
PAIRS = "pairs.json"
REMOVAL = "removal.json"
DYNAMICS = "dynamics.json"
EXAMPLES = "examples.json"
EXAMPLE_FPS = 8.0
LAYER_SCORES = ("S_static", "S_dynamic", "pct_static", "pct_dynamic", "pct_identical")
"""Fields of a ``layers.json`` row that are NaN (``null`` on disk) for a layer with no live unit."""


def units_key(factor: str, row: int) -> str:
    """The array of ``units.npz`` holding row ``row`` of ``layers.json``'s per-unit ``factor`` scores."""
    return f"s_{factor}_{row}"


def example_file(index: int, key: str) -> str:
    return f"examples/{index}-{key}.mp4"


def write(result: StaticDynamicResult, writer: RunWriter) -> None:
    """Every file of the run into ``writer`` (warnings into its manifest); the caller finishes it."""
    for w in result.warnings:
        writer.warn(w["code"], w["message"], setting=w.get("setting"), layer=w.get("layer"), figure=w.get("figure"))
    if result.examples:
        rows = []
        for k, ex in enumerate(result.examples):
            files = {}
            for key, frames in (ex.get("clips") or {}).items():
                name = example_file(k, key)
                if not writer.has(name):
                    with writer.writing(name) as tmp:  # a full disk or a kill leaves no half-written clip
                        write_video(tmp, frames, fps=EXAMPLE_FPS)
                files[key] = name
            rows.append({"video": ex["video"], "caption": ex["caption"], "files": files or ex.get("files", {}),
                         "styles": ex.get("styles")})
        writer.write_json(EXAMPLES, rows)
    units = {}
    for i, sc in enumerate(sc for m in result.models for sc in m.scores):  # row i of layers.json
        units[units_key("static", i)] = sc.s_static
        units[units_key("dynamic", i)] = sc.s_dynamic
    writer.write_json(MODELS, [m.record for m in result.models])
    writer.write_json(LAYERS, nan_to_null(result.layer_table()))
    writer.write_npz(UNITS, **units)
    writer.write_json(PAIRS, result.pairs)
    curves = result.removal_curves()
    if curves:
        config = result.manifest_config
        writer.write_json(REMOVAL, {"metric": "top-1 accuracy", "n_videos": result.n_labelled,
                                    "fractions": config.get("removal_fractions"), "seeds": config.get("removal_seeds"),
                                    "curves": curves})
    if result.dynamics:
        writer.write_json(DYNAMICS, result.dynamics)


def save(result: StaticDynamicResult, target: RunWriter | str | Path, *, run_id: str | None = None,
         overwrite: bool = False) -> Path:
    """Write ``result`` into an open writer (returns its partial folder), or as a finished run under the
    artifact root ``target`` (returns ``<target>/static-dynamic/<run_id>``)."""
    if isinstance(target, RunWriter):
        write(result, target)
        return target.dir
    with RunWriter(target, KIND, model=result.model_spec, data=result.data, config=result.manifest_config,
                   run_id=run_id, overwrite=overwrite) as writer:
        write(result, writer)
        return writer.finish(result.summary())


def _optional(run: Run, name: str) -> Any:
    return run.load_json(name) if run.has(name) else None


def load(run_dir: str | Path | Run) -> StaticDynamicResult:
    """A finished ``static-dynamic`` run as a result (per-unit arrays and all; example clips stay files)."""
    from core.static_dynamic.analysis import ModelResult, StaticDynamicResult
    from core.static_dynamic.scores import LayerScores

    run = run_dir if isinstance(run_dir, Run) else open_run(run_dir)
    if run.kind != KIND:
        raise RunError(f"run {run.path}: a {run.kind} run, not a {KIND} run")
    models, rows, units = run.load_json(MODELS), run.load_json(LAYERS), run.load_npz(UNITS)
    fields = [f for f in LayerScores.__dataclass_fields__ if f not in ("s_static", "s_dynamic")]
    out = []
    for m in models:
        mine = [(i, r) for i, r in enumerate(rows) if r.get("model") == m["label"]]
        scores = []
        for i, r in mine:
            missing = [f for f in fields if f not in r]
            keys = [units_key("static", i), units_key("dynamic", i)]
            absent = [k for k in keys if k not in units]
            if missing or absent:
                what = f"{LAYERS} row {i} has no {missing[0]}" if missing else f"{UNITS} has no {absent[0]}"
                raise RunError(f"run {run.path}: {what}")
            values = {f: null_to_nan(r[f]) if f in LAYER_SCORES else r[f] for f in fields}
            scores.append(LayerScores(**values, s_static=units[keys[0]], s_dynamic=units[keys[1]]))
        out.append(ModelResult(m["label"], m, [r["layer"] for _, r in mine], scores))
    removal = _optional(run, REMOVAL)
    for c in (removal or {}).get("curves", []):
        for m in out:
            if m.label == c["model"]:
                m.removal.append({k: v for k, v in c.items() if k != "model"})
    manifest_config = run.manifest.get("config") if isinstance(run.manifest.get("config"), dict) else {}
    n_clips = run.summary.get("n_clips")
    return StaticDynamicResult(
        config=_config(manifest_config), models=out, pairs=_optional(run, PAIRS) or {},
        data=run.manifest.get("data") or {}, n_clips=n_clips if isinstance(n_clips, int) else 0,
        n_labelled=(removal or {}).get("n_videos") or 0, styles=list(manifest_config.get("styles") or []),
        model_spec=run.manifest.get("model"), manifest_config=manifest_config,
        examples=_optional(run, EXAMPLES) or [], dynamics=_optional(run, DYNAMICS), warnings=run.warnings)


def _config(manifest_config: dict[str, Any]) -> Any:
    """The run's settings as a config, or None when they do not form a valid one (an old or foreign run)
    or name a folder of pre-stylized copies."""
    from core.static_dynamic.config import StaticDynamicConfig
    from core.static_dynamic.styles import STYLES

    c = manifest_config
    if c.get("styles_folder"):  # a folder on the machine that made the run: never looked at here
        return None
    styles = c.get("styles") or None
    try:
        return StaticDynamicConfig(
            pairs=c["pairs"], lam=c["lambda"], styles=None if styles == list(STYLES) else styles,
            batch_size=c.get("batch_size", 16), seed=c.get("seed", 0), removal=bool(c.get("removal", False)),
            removal_layers=c.get("removal_layers"),
            removal_fractions=c.get("removal_fractions") or StaticDynamicConfig().removal_fractions,
            removal_seeds=c.get("removal_seeds", 3), examples=c.get("examples", 2))
    except (ConfigError, KeyError, TypeError, ValueError):
        return None
