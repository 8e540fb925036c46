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

import contextlib
import errno
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import run_schema
from core.errors import RunError, UserError
from core.jsonsafe import nan_to_null

try:
    import fcntl
except ImportError:  # not POSIX: runs are written without a lock
    fcntl = None  # type: ignore[assignment]

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
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""One part of a file name, or a run id (use with ``fullmatch``)."""
MAX_RUN_ID = 128
"""Longest run id: it becomes a folder name, and file systems allow 255 bytes."""
MAX_NAME = 1024
"""Longest file name (with its folders) a manifest may list."""
MAX_NPZ_BYTES = 4 << 30
"""Largest total size of the arrays of one ``.npz`` a reader loads (a guard against zip bombs)."""
LOCK = ".lock"
_TMP_RE = re.compile(r"\..+\.tmp\d+|\.tmp\d+-.+")
"""Temporaries of :func:`_atomic_write` and :meth:`RunWriter.writing`."""


class DiskFullError(UserError):
    """The disk (or quota) filled up while a run was being written; the partial run stays resumable."""


def name_problem(name: Any) -> str | None:
    """Why ``name`` is not a plain relative file name inside a run (None when it is one).

    A name is one or more ``/``-separated parts, each of letters, digits, ``.``, ``_`` and ``-`` and not
    starting with ``.`` or ``-``; so no absolute paths, ``..``, empty parts, backslashes or NUL.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    if name.startswith("/"):
        return "is an absolute path"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return f"has a {part!r} part" if part else "has an empty part"
        if not _NAME_RE.fullmatch(part):
            return f"has a part {part!r} that is not plain letters, digits, '.', '_' and '-'"
    return None


def run_id_problem(run_id: Any) -> str | None:
    """Why ``run_id`` cannot name a run folder (None when it can)."""
    if not isinstance(run_id, str):
        return f"is a {type(run_id).__name__}, not a string"
    if len(run_id) > MAX_RUN_ID:
        return f"is {len(run_id)} characters long (at most {MAX_RUN_ID})"
    if not _NAME_RE.fullmatch(run_id):
        return "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
    return None


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
    """Reject file names that would escape the run folder or hide from listings (the readers' rule too)."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"invalid artifact file name {name!r}: it {problem}")
    if name.split("/")[-1] == MANIFEST:
        raise ValueError("manifest.json is written by the run store itself")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename; on any failure the temporary goes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class _Lock:
    """An exclusive ``flock`` on a lock file, holding the pid and host of its owner (POSIX only)."""

    def __init__(self, path: Path, file: Any) -> None:
        self.path = path
        self.file = file

    @classmethod
    def take(cls, path: Path, what: str) -> _Lock | None:
        """Lock ``path`` (created if missing) or raise UserError naming the holder of ``what``."""
        if fcntl is None:
            return None
        for _ in range(20):
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+")  # noqa: SIM115 - held open for the writer's life
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = _read_holder(f.read())
                f.close()
                raise UserError(f"run {what} is being written by {holder}; wait for it or use another --run-id") \
                    from None
            except OSError as e:
                f.close()
                if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                    return None  # a file system without locks: write unlocked, as before
                raise
            try:
                same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder released and removed it between our open and flock: take the new one
                f.close()
                continue
            f.seek(0)
            f.truncate()
            f.write(json.dumps(_writer()))
            f.flush()
            return cls(path, f)
        raise UserError(f"run {what}: could not take the lock {path}; try again")

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and unlock."""
        if self.file is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.file.fileno()).st_ino:
                os.unlink(self.path)
        self.file.close()
        self.file = None


def _read_holder(text: str) -> str:
    try:
        w = json.loads(text)
        return f"pid {int(w['pid'])} on host {str(w['host'])[:100]}"
    except (ValueError, TypeError, KeyError):
        return "another process"


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
        if run_id is not None:
            problem = run_id_problem(run_id)
            if problem:
                raise UserError(f"invalid run id {str(run_id)[:80]!r}: it {problem}")
        self.kind = kind
        self.kind_dir = Path(root) / kind
        self.overwrite = overwrite
        self.hash = config_hash({"kind": kind, "model": model, "data": data, "config": config,
                                 "run_id": run_id})
        self.dir = self.kind_dir / f"{PARTIAL_PREFIX}{self.hash[:16]}"
        self.resumed = False
        self._finished = False
        self._locks: list[_Lock] = []
        try:
            with self._disk("the run's folder"):
                self._start(model, data, config, run_id, resume)
        except BaseException:
            self.close()
            raise

    def _start(self, model: Any, data: Any, config: dict[str, Any], run_id: str | None, resume: bool) -> None:
        """Lock the run, check its final folder is free, and start or resume the partial folder."""
        if run_id is not None:  # two jobs of other configs naming the same run meet here
            self._check_final(run_id)
            self._take_lock(self.kind_dir / f".run-{run_id}{LOCK}", f"{self.kind}/{run_id}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock(self.dir / LOCK, f"{self.kind}/{self.dir.name}")
        old = _read_json_or_none(self.dir / MANIFEST)
        if isinstance(old, dict) and resume and old.get("schema_version") == SCHEMA_VERSION \
                and run_id_problem(old.get("run_id")) is None:
            self.manifest = old
            self.manifest.update(status="running", writer=_writer())
            self.manifest.pop("error", None)
            self.resumed = True
            self._check_final(self.run_id)
        else:
            for p in self.dir.iterdir():  # start afresh, keeping the lock file we hold
                if p.name == LOCK:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            if run_id is None:
                run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(_model_label(model))}-{self.hash[:6]}"
            self.manifest = {
                "schema_version": SCHEMA_VERSION,
                "kind": self.kind,
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
        self._write_manifest()

    def _check_final(self, run_id: str) -> None:
        if (self.kind_dir / run_id).exists() and not self.overwrite:
            raise UserError(f"run {self.kind_dir / run_id} already exists; choose another --run-id or pass "
                            "--overwrite")

    def _take_lock(self, path: Path, what: str) -> None:
        lock = _Lock.take(path, what)
        if lock is not None:
            self._locks.append(lock)

    def close(self) -> None:
        """Release the run's locks (done by :meth:`finish`, by leaving the ``with`` block, and at exit)."""
        while self._locks:
            self._locks.pop().release()

    @contextlib.contextmanager
    def _disk(self, name: str) -> Iterator[None]:
        """Turn a full disk while writing ``name`` into one line that says how to go on."""
        try:
            yield
        except OSError as e:
            if e.errno not in _DISK_FULL:
                raise
            raise DiskFullError(f"disk full while writing {name} in {self.dir}: free space and rerun the same "
                                "command to resume") from None

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

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[Path]:
        """A temporary path (same suffix) to write file ``name`` to with an external writer (a video
        encoder); it becomes ``name`` only when the block succeeds, so a failure (a full disk, a kill)
        never leaves a half-written file that a resumed job would take as done."""
        final = self.path(name)
        tmp = final.with_name(f".tmp{os.getpid()}-{final.name}")
        try:
            with self._disk(name):
                yield tmp
                os.replace(tmp, final)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def has(self, name: str) -> bool:
        """True when ``name`` was already written (by this writer or a killed earlier one)."""
        _check_name(name)
        return (self.dir / name).is_file()

    def write_bytes(self, name: str, data: bytes) -> Path:
        with self._disk(name):
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

    # -- core.checkpoint.CheckpointStore: core entry points resume through these ---------------
    def load_json(self, name: str) -> Any:
        """As :meth:`read_json` (the checkpoint-store name)."""
        return self.read_json(name)

    def save_json(self, name: str, obj: Any) -> None:
        self.write_json(name, obj)

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        return self.load_npz(name)

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        self.write_npz(name, **arrays)

    def read_json(self, name: str) -> Any:
        """Read back a JSON file written earlier in this (possibly resumed) run."""
        return json.loads(self.path(name).read_text())

    def load_npz(self, name: str) -> dict[str, np.ndarray]:
        return _load_npz(self.path(name), f"partial run {self.dir}")

    # -- lifecycle -------------------------------------------------------------------------
    def _write_manifest(self) -> None:
        with self._disk(MANIFEST):
            _atomic_write(self.dir / MANIFEST,
                          (json.dumps(self.manifest, indent=1, default=_json_default) + "\n").encode())

    def finish(self, summary: dict[str, Any] | None = None) -> Path:
        """Hash every file, mark the run complete and move it into place; returns its folder.

        Hidden files (the lock, temporaries of a killed job) and symlinks are not part of the run;
        temporaries are deleted.
        """
        files = {}
        for p in sorted(self.dir.rglob("*")):
            rel = p.relative_to(self.dir).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):
                if _TMP_RE.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                    p.unlink()
                continue
            if p.is_symlink() or not p.is_file() or rel == MANIFEST or name_problem(rel):
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
        for lock in self._locks:
            if lock.path.parent == self.dir:  # it moved with the folder
                lock.path = final / lock.path.name
        self._finished = True
        self.close()
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return final

    def fail(self, error: BaseException) -> None:
        """Mark the partial run failed; its files stay for the next (resuming) writer.

        Best effort: when even that cannot be written (a full disk) the manifest stays as it was,
        still resumable.
        """
        self.manifest.update(status="failed", error=f"{type(error).__name__}: {error}")
        if self.dir.exists():
            with contextlib.suppress(OSError, UserError):
                self._write_manifest()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None and not self._finished:
                self.fail(exc)
        finally:
            self.close()


def _writer() -> dict[str, Any]:
    """Who writes a partial run, so a listing can tell a killed job from a running one."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _writer_gone(manifest: dict[str, Any]) -> bool:
    """True when the job that wrote a 'running' manifest on this host no longer exists."""
    writer = manifest.get("writer")
    if not isinstance(writer, dict) or writer.get("host") != socket.gethostname() \
            or not isinstance(writer.get("pid"), int) or not 0 < writer["pid"] < 2**31:
        return False
    try:
        os.kill(writer["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _json_default(obj: Any) -> Any:
    """numpy values as plain JSON; their NaN and infinities as null (:mod:`core.jsonsafe`)."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return nan_to_null(obj.item() if isinstance(obj, np.generic) else obj)
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
    except (OSError, ValueError, RecursionError):
        return None


def _npz_problem(path: Path) -> str | None:
    """Why the arrays of the npz at ``path`` cannot be loaded as they are declared (None: they can).

    Each member's header declares its array's shape and dtype; a member whose data is not exactly that
    size is truncated or forged, and arrays past :data:`MAX_NPZ_BYTES` are refused before any allocation.
    """
    total = 0
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    return f"member {info.filename} has an npy version {version} this reader does not read"
                shape, _, dtype = read_header(f)
                if dtype.hasobject:
                    return None  # np.load refuses it below, naming pickles
                nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if nbytes != info.file_size - f.tell():
                    return (f"member {info.filename} declares {nbytes} bytes of data but holds "
                            f"{info.file_size - f.tell()}")
                total += nbytes
    if total > MAX_NPZ_BYTES:
        return f"its arrays would take {total} bytes (more than the {MAX_NPZ_BYTES} this reader loads)"
    return None


def _load_npz(path: Path, who: str) -> dict[str, np.ndarray]:
    """The arrays of the npz at ``path``, never unpickling; any damage is a RunError naming ``who`` and the file."""
    try:
        problem = _npz_problem(path)
        if problem is None:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise RunError(f"{who}: {path.name} holds pickled objects; refusing to load it "
                           "(artifacts never contain pickles)") from None
        problem = f"not a valid npz file ({e})"
    except MemoryError:
        problem = "too large to load"
    except Exception as e:  # zip, zlib and npy parsers of a hostile file fail in many ways
        problem = f"unreadable or truncated ({type(e).__name__}: {e})"
    raise RunError(f"{who}: {path.name} is {problem}" if problem.startswith(("not ", "unreadable", "too "))
                   else f"{who}: {path.name} is damaged: {problem}")


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
        """Path of file ``name`` after checking its size and sha256 against the manifest.

        Only plain relative names inside the run folder are served: no symlinked file or folder.
        """
        entry = self.manifest["files"].get(name) if isinstance(name, str) else None
        if entry is None:
            names = sorted(self.manifest["files"])
            listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            raise self._err(f"has no file {str(name)[:200]!r} (it has {listed or 'none'})")
        p = self._inside(name)
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

    def _inside(self, name: str) -> Path:
        """``path / name`` when that is a plain name whose parts are no symlinks and stay in the run."""
        problem = name_problem(name)
        if problem:
            raise self._err(f"refusing file name {name[:200]!r}: it {problem}")
        p = self.path
        for part in name.split("/"):
            p = p / part
            if p.is_symlink():
                raise self._err(f"refusing file {name}: {p.relative_to(self.path)} is a symlink "
                                "(a run holds plain files only)")
        try:
            inside = p.resolve().is_relative_to(self.path.resolve())
        except (OSError, RuntimeError):
            inside = False
        if not inside:
            raise self._err(f"refusing file {name}: it lies outside the run folder")
        return p

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def files(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.manifest["files"] if n.startswith(prefix))

    def load_json(self, name: str) -> Any:
        """The parsed JSON file ``name``, checked against the shape its run kind expects (core.run_schema)."""
        p = self.file(name)
        try:
            doc = json.loads(p.read_text())
        except (ValueError, RecursionError) as e:
            raise self._err(f"file {name} is not valid JSON ({str(e)[:200]})") from None
        except OSError as e:
            raise self._err(f"cannot read file {name} ({e})") from None
        problem = run_schema.check(self.kind, name, doc)
        if problem:
            raise self._err(f"file {name} is malformed: {problem[:300]}; re-run the analysis")
        return doc

    def load_npz(self, name: str) -> dict[str, np.ndarray]:
        return _load_npz(self.file(name), f"run {self.path}")

    def read_bytes(self, name: str) -> bytes:
        try:
            return self.file(name).read_bytes()
        except OSError as e:
            raise self._err(f"cannot read file {name} ({e})") from None

    def load_image(self, name: str) -> np.ndarray:
        """Image file ``name`` as ``(H, W, 3)`` uint8 RGB; an undecodable image is a RunError."""
        from PIL import Image

        data = self.read_bytes(name)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
        except MemoryError:
            raise self._err(f"image {name} is too large to decode") from None
        except Exception as e:  # PIL's decoders of a hostile file fail in many ways
            raise self._err(f"image {name} cannot be decoded ({type(e).__name__}: {str(e)[:200]}); "
                            "re-run the analysis") from None

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
    if not isinstance(version, int) or isinstance(version, bool):
        raise RunError(f"run {where}: schema_version {version!r} is not an integer")
    if version > SCHEMA_VERSION:
        raise RunError(f"run {where}: written with artifact schema {version}, newer than this "
                       f"version reads ({SCHEMA_VERSION}); upgrade Concept Lens to open it")
    if version < MIN_SCHEMA_VERSION:
        raise RunError(f"run {where}: written with artifact schema {version}, older than this "
                       f"version reads ({MIN_SCHEMA_VERSION}..{SCHEMA_VERSION}); re-run the analysis")
    status = manifest["status"]
    if not isinstance(status, str) or status not in STATUSES:
        raise RunError(f"run {where}: unknown status {str(status)[:80]!r}")
    if status != "complete":
        raise RunError(f"run {where}: status is {status!r}, not complete; "
                       "rerun the same command to resume it")
    for key, types, what in _MANIFEST_TYPES:
        if key in manifest and not isinstance(manifest[key], types):
            raise RunError(f"run {where}: manifest '{key}' must be {what}, not {_json_type(manifest[key])}; "
                           "it was not written by this tool, or is damaged")
    problem = run_id_problem(manifest["run_id"])
    if problem:
        raise RunError(f"run {where}: manifest run_id {manifest['run_id'][:80]!r} {problem}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", manifest["kind"]):
        raise RunError(f"run {where}: manifest kind {manifest['kind'][:80]!r} is not a run kind")
    for name, entry in manifest["files"].items():
        problem = name_problem(name)
        if problem or name.split("/")[-1] == MANIFEST:
            raise RunError(f"run {where}: manifest lists the file {name[:200]!r}, which "
                           f"{problem or 'is the manifest itself'}; a run lists only plain names inside "
                           "its folder (refusing the run)")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])):
            raise RunError(f"run {where}: manifest 'files' entry {name!r} must hold the file's sha256")
        if "bytes" in entry and not (isinstance(entry["bytes"], int) and not isinstance(entry["bytes"], bool)
                                     and entry["bytes"] >= 0):
            raise RunError(f"run {where}: manifest 'files' entry {name!r} has a bad byte count")
    return manifest


_MANIFEST_TYPES: tuple[tuple[str, type | tuple[type, ...], str], ...] = (
    ("kind", str, "a string"),
    ("run_id", str, "a string"),
    ("created", str, "a string"),
    ("finished", (str, type(None)), "a string or null"),
    ("model", (dict, list, str), "an object, a list or a string"),
    ("data", (dict, list, str, type(None)), "an object, a list or a string"),
    ("config", dict, "an object"),
    ("versions", dict, "an object"),
    ("files", dict, "an object mapping file names to their sha256"),
    ("summary", dict, "an object"),
    ("warnings", list, "a list"),
)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def open_run(path: str | Path, verify: bool = False) -> Run:
    """Open the run folder at ``path``; with ``verify`` every file's hash is checked now."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise RunError(f"run {path}: no such folder")
    if not mpath.is_file():
        raise RunError(f"run {path}: no manifest.json; not a run folder")
    if mpath.is_symlink():
        raise RunError(f"run {path}: manifest.json is a symlink; a run holds plain files only")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, RecursionError):
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


def _run_folders(root: Path) -> Iterator[tuple[str, Path]]:
    """``(kind, folder)`` for each folder ``<root>/<kind>/<name>`` (kinds starting with "." skipped; kinds and
    names in order): where :func:`list_runs` looks for runs and what :func:`runs_signature` fingerprints, so that
    the two never disagree. An unreadable folder raises :class:`OSError`."""
    with os.scandir(root) as entries:
        kinds = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    for kind in kinds:
        with os.scandir(root / kind) as entries:
            names = sorted(e.name for e in entries if e.is_dir())
        for name in names:
            yield kind, root / kind / name


def runs_signature(root: str | Path, slot_s: float = 5.0) -> tuple:
    """A cheap fingerprint of the runs under ``root`` (stats only, no file read): each run folder with its
    manifest's size and modification time, so that :func:`list_runs` can be cached until a run is added,
    removed or rewritten. While a partial run is listed, the current ``slot_s``-second time slot is part of it
    too (its writer can die without touching the manifest, and the listing then says ``killed``). ``()`` when
    the folders cannot be read (no root: :func:`list_runs` lists nothing; an unreadable kind: it raises)."""
    parts: list[tuple[str, str, int, int]] = []
    partial = False
    try:
        for kind, folder in _run_folders(Path(root)):
            try:
                st = os.stat(folder / MANIFEST)
            except OSError:
                continue
            partial = partial or folder.name.startswith(PARTIAL_PREFIX)
            parts.append((kind, folder.name, st.st_size, st.st_mtime_ns))
    except OSError:
        return ()
    return (tuple(parts), int(time.time() // slot_s) if partial else None)


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
    for kind, run_dir in _run_folders(root):
        if not (run_dir / MANIFEST).is_file():
            continue
        if run_dir.name.startswith(PARTIAL_PREFIX):
            m = _read_json_or_none(run_dir / MANIFEST)
            m = m if isinstance(m, dict) else {}
            status = m.get("status", "unknown")
            status = status if status in STATUSES else "unknown"
            if status == "running" and _writer_gone(m):
                status = "killed"
            error = m.get("error")
            entries.append(RunEntry(run_dir, kind, partial=True, partial_status=status,
                                    error=None if error is None else str(error)[:500],
                                    manifest=m))
            continue
        if run_dir.name.startswith("."):
            continue
        try:
            run = open_run(run_dir)
            if run.kind != kind:  # pages pick runs by folder and read files by the manifest's kind
                raise RunError(f"run {run_dir}: its manifest says kind {run.kind!r}, but it lies in the "
                               f"{kind!r} folder")
            entries.append(RunEntry(run_dir, kind, run=run, manifest=run.manifest))
        except RunError as e:
            entries.append(RunEntry(run_dir, kind, error=str(e)))

    def created(e: RunEntry) -> str:
        return str((e.manifest or {}).get("created", ""))

    return sorted(entries, key=created, reverse=True)
