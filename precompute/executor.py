"""Where a job's units of work run: here, one after the other (``--executor local``, the default), or as
tasks on a Ray cluster (``--executor ray``, ``--ray-address``).

A job lists its units (a VCC class, a static/dynamic model or training checkpoint, a VTCD layer or clip,
a batch of predictions, a debugged image) as :class:`Unit` objects and hands them to
:meth:`fan_out` before its serial loop. The local executor does nothing there: the serial loop computes
every unit, as it always did. The Ray executor runs each unfinished unit as a task that calls the same
core code with a :class:`core.parts.FolderStore` over the run's partial folder (which every node must
see: the artifact root is shared), so the parts land where the serial loop looks for them; the serial
loop then reads them back and assembles the run. Workers return only their time (a float); what goes
into the run is the JSON/npz files they wrote.

- Resume: units whose ``done`` part the partial folder holds are not submitted again (a killed driver
  rerun with the same command); a unit half done when the driver died resumes from its own parts.
- Faults: a task whose worker dies is retried (``max_retries``); a task that fails on bad input fails
  the job with the same :class:`core.errors.UserError` the serial job raises (re-raised as it is).
- Progress: one bar per stage counting units done / total; the Ray dashboard's address when there is one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.errors import UserError

EXECUTORS = ("local", "ray")
MAX_RETRIES = 3
"""How many times Ray resubmits a task whose worker process died (a crash, the OOM killer, a lost node)."""
CANCEL_WAIT = 30.0
"""Seconds a failed or interrupted stage waits for the workers of its cancelled tasks to stop."""
ROOT = Path(__file__).resolve().parents[1]


def add_executor_arguments(p: Any) -> None:
    """``--executor`` and ``--ray-address`` on an analysis job's parser."""
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: units of work one after the other in this process (default); ray: each unit "
                   "(class, model, checkpoint, layer, clip, batch) a Ray task (pip install ray)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --executor ray: 'auto' or ray://host:port joins a running cluster (the artifact root "
                   "must be a folder every node sees); default: start a local Ray instance with this machine's "
                   "cores and GPUs")


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``fn(store, *shared, *args)`` run in a worker, where ``store`` is a
    :class:`core.parts.FolderStore` over the run's partial folder and ``shared`` the arguments every unit
    of the stage takes (sent to the cluster once). ``key`` names it (``class red``, ``model r3d-motion``);
    ``done`` is the part that exists once it is finished."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: str
    cpus: float | None = None
    """CPUs the task takes (None: the executor's ``num_cpus``)."""


class LocalExecutor:
    """Today's behaviour: :meth:`fan_out` does nothing and the job's serial loop computes every unit."""

    name = "local"
    parallel = False
    num_gpus = 0

    def fan_out(self, writer: Any, stage: str, units: Sequence[Unit], shared: tuple[Any, ...] = ()) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _work(fn: Callable[..., Any], folder: str, cwd: str, *args: Any) -> float:
    """A task: run ``fn`` over the partial run ``folder``; returns its wall time in seconds. Relative paths
    (model specs such as ``py:model.py:make``) mean what they mean to the driver, in its folder ``cwd``."""
    from core.parts import Focused, FolderStore

    if os.path.isdir(cwd):
        os.chdir(cwd)
    t0 = time.perf_counter()
    with contextlib.suppress(Focused):  # the unit's parts are saved: the rest of the call is other workers' work
        fn(FolderStore(folder), *args)
    return time.perf_counter() - t0


@dataclass
class RayExecutor:
    """Units as Ray tasks of ``num_cpus`` CPUs and ``num_gpus`` GPUs (and ``memory`` bytes when set)."""

    address: str | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    memory: int | None = None
    max_retries: int = MAX_RETRIES
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    on_done: Callable[[str, Unit, float], None] | None = None
    """Called in the driver as each unit finishes (``stage, unit, seconds``): benchmarks and tests."""
    timings: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    """Per stage, each finished unit's key and its task's wall time."""
    name = "ray"
    parallel = True
    _started: bool = False
    _remote: Any = None

    def start(self) -> None:
        """Connect to the cluster (or start a local instance) once; prints what was started."""
        if self._remote is not None:
            return
        ray = import_ray()
        if not ray.is_initialized():
            env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
            kwargs: dict[str, Any] = {"address": self.address, "runtime_env": {"env_vars": env},
                                      "log_to_driver": False, **self.init_kwargs}
            try:
                context = ray.init(**kwargs)
            except (ConnectionError, ValueError) as e:
                raise UserError(f"--ray-address {self.address}: no Ray cluster there ({str(e).splitlines()[0]}); "
                                "start one with `ray start --head` or leave --ray-address out") from None
            self._started = True
            res = ray.cluster_resources()
            where = "joined the Ray cluster at " + self.address if self.address else "started a local Ray instance"
            url = getattr(context, "dashboard_url", None)
            dash = f"dashboard: http://{url}" if url else "no dashboard (pip install 'ray[default]' for one)"
            print(f"ray: {where}: {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs; {dash}", file=sys.stderr)
        self._remote = ray.remote(_work)

    def fan_out(self, writer: Any, stage: str, units: Sequence[Unit], shared: tuple[Any, ...] = ()) -> None:
        """Run every unit whose ``done`` part ``writer`` lacks as a task; wait for all of them (one bar)."""
        todo = [u for u in units if not writer.has(u.done)]
        if not todo:
            return
        self.start()
        ray = import_ray()
        opts: dict[str, Any] = {"num_gpus": self.num_gpus, "max_retries": self.max_retries,
                                "retry_exceptions": False}
        if self.memory:
            opts["memory"] = self.memory
        shared_refs = tuple(ray.put(s) for s in shared)
        folder, cwd = str(Path(writer.dir).resolve()), os.getcwd()
        refs = {self._remote.options(**opts, num_cpus=u.cpus or self.num_cpus).remote(u.fn, folder, cwd, *shared_refs,
                                                                                      *u.args): u for u in todo}
        bar = tqdm(total=len(units), initial=len(units) - len(todo), desc=f"{stage} (ray)", file=sys.stderr,
                   mininterval=0.5, dynamic_ncols=True, leave=False)
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    unit = refs.pop(ref)
                    try:
                        seconds = float(ray.get(ref))
                    except Exception as e:
                        raise _job_error(e, stage, unit, self.max_retries) from None
                    self.timings.setdefault(stage, []).append((unit.key, seconds))
                    bar.update(1)
                    if self.on_done is not None:
                        self.on_done(stage, unit, seconds)
        finally:
            bar.close()
            for ref in refs:  # a failed or interrupted stage: its other tasks are not wanted any more
                ray.cancel(ref, force=True)
            if refs:  # and must not write into the run after this (a rerun may already be writing it)
                ray.wait(list(refs), num_returns=len(refs), timeout=CANCEL_WAIT)

    def close(self) -> None:
        """Shut down the Ray instance this executor started (a joined cluster keeps running)."""
        if self._started:
            import_ray().shutdown()
            self._started = False
        self._remote = None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _job_error(e: Exception, stage: str, unit: Unit, retries: int) -> BaseException:
    """The error a failed task becomes in the driver: the worker's own :class:`UserError` (the serial job's
    message), one line naming the unit when its worker kept dying, else the worker's exception."""
    ray = import_ray()
    cause = getattr(e, "cause", None)
    if isinstance(cause, UserError):
        return cause
    if isinstance(e, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                      ray.exceptions.OutOfMemoryError)):
        return UserError(f"{stage}: {unit.key}: its Ray worker died {retries + 1} times ({type(e).__name__}); "
                         "rerun the same command to resume from the finished parts")
    if isinstance(cause, Exception):
        return cause
    return e


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray, which is not installed: pip install ray") from None
    return ray


def executor_from_args(args: Any) -> LocalExecutor | RayExecutor:
    """The executor a job's flags ask for; Ray tasks take one GPU each when the job runs on CUDA."""
    kind, address = args.executor, args.ray_address
    if kind == "local":
        if address:
            raise UserError("--ray-address needs --executor ray")
        return LocalExecutor()
    if kind != "ray":
        raise UserError(f"--executor {kind!r}: use one of {', '.join(EXECUTORS)}")
    import_ray()
    device = str(args.device)
    gpus = 1 if device.startswith("cuda") or (device == "auto" and _cuda()) else 0
    return RayExecutor(address=address, num_gpus=gpus)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()

