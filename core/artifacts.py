"""The artifact store: self-describing run folders that precompute writes and the dashboard reads.

A run lives at ``<root>/<kind>/<run_id>/`` and holds ``manifest.json`` plus data files
(JSON, ``.npz`` without pickles, PNG/WebP, H.264 MP4). While a job runs, its files sit in
``<root>/<kind>/.partial-<config hash>/``; :meth:`RunWriter.finish` hashes every file, writes the
final manifest and renames the folder into place, so a killed job never leaves a folder that
looks like a finished run. Rerunning the same job (same kind, model, data and config) finds the
partial folder and resumes: jobs ask :meth:`RunWriter.has` before recomputing a unit of work.

Readers (:func:`open_run`) validate the manifest and, file by file, the sha256 recorded in it,
and load arrays with ``allow_pickle=False``. Every problem is a :class:`RunError` whose message
names the run and the problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import RunError, UserError

SCHEMA_VERSION = 1
"""Version of the manifest layout written by this code. Bump it when the layout changes."""

MIN_SCHEMA_VERSION = 1
"""Oldest manifest layout this code can still read."""

REQUIRED_KEYS = (
    "schema_version",
    "kind",
    "run_id",
    "status",
    "created",
    "model",
    "data",
    "config",
    "versions",
    "files",
    "summary",
)
STATUSES = ("running", "complete", "failed")
MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of :func:`config_hash`."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape results, for the manifest."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("torch", "torchvision", "timm", "numpy", "scipy",
                 "scikit-learn", "scikit-image", "opencv-python-headless"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    from core import __version__

    versions["concept-lens"] = __version__
    return versions


def slug(text: str, max_len: int = 40) -> str:
    """A file-name-safe short form of ``text`` (model specs contain ':' and '/')."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return (s or "run")[:max_len].rstrip("-.")


def _check_name(name: str) -> None:
    """Reject file names that would escape the run folder or hide from listings."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or any(not _NAME_RE.match(p) for p in parts):
        raise ValueError(f"invalid artifact file name {name!r}")
    if parts[-1] == MANIFEST:
        raise ValueError("manifest.json is written by the run store itself")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunWriter:
    """Writes one run, resumably; use as a context manager.

    >>> with RunWriter(root, "predictions", model={...}, data={...}, config={...}) as run:
    ...     if not run.has("preds.json"):
    ...         run.write_json("preds.json", compute())
    ...     final_path = run.finish(summary={"n_images": 8})

    If the body raises (or the job is interrupted), the partial folder stays with status
    ``failed`` and the next writer with the same kind, model, data and config resumes it.
    """

    def __init__(
        self,
        root: str | Path,
        kind: str,
        *,
        model: Any,
        data: Any,
        config: dict[str, Any],
        run_id: str | None = None,
        resume: bool = True,
        overwrite: bool = False,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", kind):
            raise ValueError(f"invalid run kind {kind!r}")
        if run_id is not None and not _NAME_RE.match(run_id):
            raise UserError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
        self.kind = kind
        self.kind_dir = Path(root) / kind
        self.overwrite = overwrite
        self.hash = config_hash({"kind": kind, "model": model, "data": data, "config": config,
                                 "run_id": run_id})
        self.dir = self.kind_dir / f"{PARTIAL_PREFIX}{self.hash[:16]}"
        self.resumed = False
        self._finished = False

        old = _read_json_or_none(self.dir / MANIFEST) if self.dir.exists() else None
        if old is not None and resume and old.get("schema_version") == SCHEMA_VERSION:
            self.manifest = old
            self.manifest.update(status="running", writer=_writer())
            self.manifest.pop("error", None)
            self.resumed = True
        else:
            if self.dir.exists():
                shutil.rmtree(self.dir)
            if run_id is None:
                run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(_model_label(model))}-{self.hash[:6]}"
            self.manifest = {
                "schema_version": SCHEMA_VERSION,
                "kind": kind,
                "run_id": run_id,
                "status": "running",
                "created": _now(),
                "finished": None,
                "model": model,
                "data": data,
                "config": config,
                "config_hash": self.hash,
                "versions": package_versions(),
                "files": {},
                "summary": {},
                "warnings": [],
                "writer": _writer(),
            }
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_manifest()

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def final_dir(self) -> Path:
        return self.kind_dir / self.run_id

    # -- files ---------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """Absolute path for file ``name`` inside the run (for writers that need a path,
        e.g. a video encoder). Write to it completely, or not at all, before :meth:`finish`."""
        _check_name(name)
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def has(self, name: str) -> bool:
        """True when ``name`` was already written (by this writer or a killed earlier one)."""
        _check_name(name)
        return (self.dir / name).is_file()

    def write_bytes(self, name: str, data: bytes) -> Path:
        p = self.path(name)
        _atomic_write(p, data)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_bytes(name, (json.dumps(obj, indent=1, default=_json_default) + "\n").encode())

    def write_npz(self, name: str, **arrays: np.ndarray) -> Path:
        """Compressed npz; object arrays are refused (they would need pickle to read)."""
        for k, a in arrays.items():
            if np.asarray(a).dtype == object:
                raise TypeError(f"array {k!r} has dtype object; artifacts never hold pickles")
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return self.write_bytes(name, buf.getvalue())

    def write_image(self, name: str, image: np.ndarray, quality: int = 90) -> Path:
        """Save an ``(H, W, 3)`` or ``(H, W)`` uint8 image; format from the suffix (.png/.webp/.jpg)."""
        from PIL import Image

        buf = io.BytesIO()
        fmt = {".png": "PNG", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG"}[Path(name).suffix.lower()]
        kwargs = {} if fmt == "PNG" else {"quality": quality}
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format=fmt, **kwargs)
        return self.write_bytes(name, buf.getvalue())

    def remove(self, name: str) -> None:
        """Delete a file or folder of scratch work (e.g. per-batch parts) before :meth:`finish`."""
        p = self.path(name)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    # -- warnings --------------------------------------------------------------------------
    def warn(self, code: str, message: str, *, setting: str | None = None, layer: str | None = None,
             figure: str | None = None) -> dict[str, Any]:
        """Record a degenerate-result warning: printed to stderr now, kept in the manifest's ``warnings``.

        ``code`` is a short stable identifier (``"vcc.empty_layer"``); ``message`` one sentence that
        names the problem and what to change; ``setting`` the option to change (``"--n-images"``);
        ``layer`` the layer it concerns (None: the whole run); ``figure`` the page figure it affects.
        A warning with the same ``(code, layer)`` replaces an earlier one (a resumed job repeats them).
        """
        entry = {"code": code, "message": message, "setting": setting, "layer": layer, "figure": figure}
        kept = [w for w in self.manifest.get("warnings", [])
                if (w.get("code"), w.get("layer")) != (code, layer)]
        self.manifest["warnings"] = [*kept, entry]
        where = f" [{layer}]" if layer else ""
        print(f"warning{where}: {message}", file=sys.stderr, flush=True)
        self._write_manifest()
        return entry

    def read_json(self, name: str) -> Any:
        """Read back a JSON file written earlier in this (possibly resumed) run."""
        return json.loads(self.path(name).read_text())

    def load_npz(self, name: str) -> dict[str, np.ndarray]:
        return _load_npz(self.path(name), f"partial run {self.dir}")

    # -- lifecycle -------------------------------------------------------------------------
    def _write_manifest(self) -> None:
        _atomic_write(self.dir / MANIFEST, (json.dumps(self.manifest, indent=1, default=_json_default) + "\n").encode())

    def finish(self, summary: dict[str, Any] | None = None) -> Path:
        """Hash every file, mark the run complete and move it into place; returns its folder."""
        files = {}
        for p in sorted(self.dir.rglob("*")):
            rel = p.relative_to(self.dir).as_posix()
            if not p.is_file() or rel == MANIFEST or p.name.startswith("."):
                continue
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        self.manifest.update(
            files=files, summary=summary or {}, status="complete", finished=_now()
        )
        self.manifest.pop("writer", None)
        final = self.final_dir
        if final.exists() and not self.overwrite:
            raise UserError(f"run {final} already exists; choose another --run-id or pass --overwrite")
        self._write_manifest()
        trash = None
        if final.exists():
            trash = final.with_name(f".trash-{final.name}-{os.getpid()}")
            os.replace(final, trash)
        os.replace(self.dir, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        self._finished = True
        return final

    def fail(self, error: BaseException) -> None:
        """Mark the partial run failed; its files stay for the next (resuming) writer."""
        self.manifest.update(status="failed", error=f"{type(error).__name__}: {error}")
        if self.dir.exists():
            self._write_manifest()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and not self._finished:
            self.fail(exc)


def _writer() -> dict[str, Any]:
    """Who writes a partial run, so a listing can tell a killed job from a running one."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _writer_gone(manifest: dict[str, Any]) -> bool:
    """True when the job that wrote a 'running' manifest on this host no longer exists."""
    writer = manifest.get("writer") or {}
    if writer.get("host") != socket.gethostname() or not isinstance(writer.get("pid"), int):
        return False
    try:
        os.kill(writer["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _model_label(model: Any) -> str:
    if isinstance(model, dict):
        return str(model.get("spec") or model.get("name") or "model")
    if isinstance(model, list) and model:
        return f"{_model_label(model[0])}+{len(model) - 1}"
    return str(model)


def _read_json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_npz(path: Path, who: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise RunError(f"{who}: {path.name} holds pickled objects; refusing to load it "
                           "(artifacts never contain pickles)") from None
        raise RunError(f"{who}: {path.name} is not a valid npz file ({e})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise RunError(f"{who}: {path.name} is unreadable or truncated ({e})") from None


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A finished run opened for reading. Files are hash-checked on first access."""

    path: Path
    manifest: dict[str, Any]
    _verified: set[str] = field(default_factory=set, repr=False)

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.manifest["summary"]

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """Degenerate-result warnings the job recorded (see :meth:`RunWriter.warn`); [] for old runs."""
        ws = self.manifest.get("warnings")
        return [w for w in ws if isinstance(w, dict) and isinstance(w.get("message"), str)] \
            if isinstance(ws, list) else []

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.run_id}"

    @property
    def fingerprint(self) -> str:
        """sha256 of the manifest: changes whenever the run is rewritten (cache key)."""
        return config_hash(self.manifest)

    def _err(self, problem: str) -> RunError:
        return RunError(f"run {self.path}: {problem}")

    def file(self, name: str) -> Path:
        """Path of file ``name`` after checking its size and sha256 against the manifest."""
        entry = self.manifest["files"].get(name)
        if entry is None:
            names = sorted(self.manifest["files"])
            listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            raise self._err(f"has no file {name!r} (it has {listed or 'none'})")
        p = self.path / name
        if name not in self._verified:
            if not p.is_file():
                raise self._err(f"file {name} is missing")
            size = p.stat().st_size
            if "bytes" in entry and size != entry["bytes"]:
                raise self._err(f"file {name} is {size} bytes but the manifest says {entry['bytes']} "
                                "(truncated or replaced); re-run the analysis")
            if sha256_file(p) != entry["sha256"]:
                raise self._err(f"file {name} does not match its sha256 in the manifest "
                                "(modified or corrupted); re-run the analysis")
            self._verified.add(name)
        return p

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def files(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.manifest["files"] if n.startswith(prefix))

    def load_json(self, name: str) -> Any:
        p = self.file(name)
        try:
            return json.loads(p.read_text())
        except ValueError as e:
            raise self._err(f"file {name} is not valid JSON ({e})") from None

    def load_npz(self, name: str) -> dict[str, np.ndarray]:
        return _load_npz(self.file(name), f"run {self.path}")

    def read_bytes(self, name: str) -> bytes:
        return self.file(name).read_bytes()

    def verify(self) -> None:
        """Check every file's size and hash; raises :class:`RunError` on the first problem."""
        for name in self.manifest["files"]:
            self.file(name)


def validate_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """Check the manifest's shape and schema version; returns it, or raises RunError."""
    if not isinstance(manifest, dict):
        raise RunError(f"run {where}: manifest.json is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise RunError(f"run {where}: manifest.json lacks {', '.join(missing)}; "
                       "it was not written by this tool, or is damaged")
    version = manifest["schema_version"]
    if not isinstance(version, int):
        raise RunError(f"run {where}: schema_version {version!r} is not an integer")
    if version > SCHEMA_VERSION:
        raise RunError(f"run {where}: written with artifact schema {version}, newer than this "
                       f"version reads ({SCHEMA_VERSION}); upgrade Concept Lens to open it")
    if version < MIN_SCHEMA_VERSION:
        raise RunError(f"run {where}: written with artifact schema {version}, older than this "
                       f"version reads ({MIN_SCHEMA_VERSION}..{SCHEMA_VERSION}); re-run the analysis")
    if manifest["status"] not in STATUSES:
        raise RunError(f"run {where}: unknown status {manifest['status']!r}")
    if manifest["status"] != "complete":
        raise RunError(f"run {where}: status is {manifest['status']!r}, not complete; "
                       "rerun the same command to resume it")
    files = manifest["files"]
    if not isinstance(files, dict) or not all(isinstance(v, dict) and "sha256" in v for v in files.values()):
        raise RunError(f"run {where}: manifest 'files' must map each file name to its sha256")
    return manifest


def open_run(path: str | Path, verify: bool = False) -> Run:
    """Open the run folder at ``path``; with ``verify`` every file's hash is checked now."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise RunError(f"run {path}: no such folder")
    if not mpath.is_file():
        raise RunError(f"run {path}: no manifest.json; not a run folder")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError:
        raise RunError(f"run {path}: manifest.json is truncated or not valid JSON") from None
    except OSError as e:
        raise RunError(f"run {path}: cannot read manifest.json ({e})") from None
    run = Run(path, validate_manifest(manifest, str(path)))
    if verify:
        run.verify()
    return run


@dataclass
class RunEntry:
    """One folder found by :func:`list_runs`: an opened run, or the reason it cannot be opened."""

    path: Path
    kind: str
    run: Run | None = None
    error: str | None = None
    partial: bool = False
    partial_status: str | None = None
    manifest: dict[str, Any] | None = None


def list_runs(root: str | Path) -> list[RunEntry]:
    """Every run under ``root`` (``<root>/<kind>/<run_id>``), newest first, reading manifests only.

    Folders without a ``manifest.json`` are not runs and are skipped. Partial runs are listed
    with ``partial=True`` and ``partial_status`` ``running``, ``killed`` (its job is gone) or
    ``failed``.
    """
    root = Path(root)
    entries: list[RunEntry] = []
    if not root.is_dir():
        return entries
    for kind_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for run_dir in sorted(p for p in kind_dir.iterdir() if p.is_dir()):
            if not (run_dir / MANIFEST).is_file():
                continue
            if run_dir.name.startswith(PARTIAL_PREFIX):
                m = _read_json_or_none(run_dir / MANIFEST)
                m = m if isinstance(m, dict) else {}
                status = m.get("status", "unknown")
                if status == "running" and _writer_gone(m):
                    status = "killed"
                entries.append(RunEntry(run_dir, kind_dir.name, partial=True, partial_status=status,
                                        error=m.get("error"), manifest=m))
                continue
            if run_dir.name.startswith("."):
                continue
            try:
                run = open_run(run_dir)
                entries.append(RunEntry(run_dir, kind_dir.name, run=run, manifest=run.manifest))
            except RunError as e:
                entries.append(RunEntry(run_dir, kind_dir.name, error=str(e)))

    def created(e: RunEntry) -> str:
        return str((e.manifest or {}).get("created", ""))

    return sorted(entries, key=created, reverse=True)
