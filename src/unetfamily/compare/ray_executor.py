"""``compare --executor ray``: every (variant, seed, fold) run is one Ray task, run in parallel.

Each task trains and evaluates its run with :func:`~unetfamily.compare.run.train_and_evaluate`, the same
function the local executor calls, in the run folder under ``--out`` (storage every node must see), with
``--cpus-per-run`` CPUs (its torch threads, and the CPUs ``loader.num_workers: auto`` shares out on a GPU)
and ``--gpus-per-run`` GPUs. A task whose worker process or
node dies is retried by Ray (:data:`MAX_RETRIES`) and resumes from the run's last checkpoint; a task that
fails with an error of its own (bad data, bad config) is not retried: it is reported with its one-line
error and the other runs go on. Ctrl-C cancels the tasks still running (their checkpoints stay) and the
same command resumes. The driver shows a live table read from each run's ``status.json``.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetfamily.compare.config import CompareConfig
from unetfamily.compare.live import LiveTable, RunRow
from unetfamily.compare.plan import PlannedRun
from unetfamily.compare.results import RunFailure, RunResult
from unetfamily.compare.run_order import estimated_work, longest_first
from unetfamily.data.workers import CPUS_ENV
from unetfamily.engine.run_log import stderr_handler
from unetfamily.errors import ConfigError, require

log = logging.getLogger(__name__)

__all__ = ["MAX_RETRIES", "RayExecutor", "Resources", "resources", "check_shared_storage"]

#: Times Ray starts a task again after its worker process or node died.
MAX_RETRIES = 3
#: A run folder's record of the tasks that started it, one line per attempt.
ATTEMPTS = "attempts.log"
#: Seconds the driver waits for the first warm-up task's estimate of the runs' work before counting it itself.
WARM_UP_WAIT_S = 60
#: Environment variables a task takes from the driver (where the data is, how threads are set).
FORWARDED_ENV = ("UNETFAMILY_DATA_ROOT", "UNETFAMILY_CACHE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


#: What the runs' work is estimated from: (the runs, one image's (C, H, W) shape, the model's outputs).
Estimate = tuple[list[PlannedRun], tuple[int, ...], int]


@dataclass(frozen=True)
class Resources:
    """What each run's task asks Ray for, and the device it trains on there."""

    cpus: int
    gpus: float
    device: str  # "cpu" or "cuda" (Ray gives the task its GPUs as cuda:0..)


def resources(cfg: CompareConfig, cluster: dict[str, float], runs: int) -> Resources:
    """Each run's resources from the options, or from the ``cluster``'s (``ray.cluster_resources()``) when unset.

    GPU runs (``--device cuda``): one GPU each and the CPUs shared among the GPUs; CPU runs: the CPUs
    shared among the runs (at most one run per CPU). ConfigError when a run could never be scheduled.
    """
    cpus_total, gpus_total = int(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    on_gpu = cfg.device.startswith("cuda")
    gpus = (1.0 if cfg.gpus_per_run is None else cfg.gpus_per_run) if on_gpu else 0.0
    if on_gpu and gpus > gpus_total:
        raise ConfigError(f"--device {cfg.device} with {gpus:g} GPU(s) per run, but the Ray cluster has {gpus_total:g} "
                          "GPUs; use --device cpu, or a cluster with GPUs")
    if cfg.cpus_per_run is not None:
        cpus = cfg.cpus_per_run
    elif on_gpu:
        cpus = max(1, cpus_total // max(1, int(gpus_total / gpus)))
    else:
        cpus = max(1, cpus_total // max(1, min(runs, cpus_total)))
    if cpus > cpus_total:
        raise ConfigError(f"--cpus-per-run {cpus} is more than the Ray cluster's {cpus_total} CPUs: no run could start")
    return Resources(cpus, gpus, "cuda" if on_gpu else "cpu")


def _connect(cfg: CompareConfig) -> tuple[Any, bool]:
    """(the ray module, whether this call started it): joins ``--ray-address`` or starts a local instance."""
    ray = require("ray", "ray", "compare --executor ray")
    if ray.is_initialized():
        return ray, False
    # the runs' logs are in their folders; a cluster keeps its own dashboard settings (Ray refuses them on joining)
    kwargs: dict[str, Any] = {"log_to_driver": False}
    kwargs.update({"address": cfg.ray_address} if cfg.ray_address is not None else {"include_dashboard": False})
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"--ray-address {cfg.ray_address}" if cfg.ray_address is not None else "a local Ray instance"
        raise ConfigError(f"could not connect to {where}: {str(exc).strip().splitlines()[0] if str(exc) else exc!r}. "
                          "Check the address (ray status on the head node shows it), or leave --ray-address out to "
                          "start Ray on this machine") from exc
    return ray, True


def _make_probe() -> Callable[[str, str, str], str]:
    """The probe a worker runs: read the driver's file at ``path``, write its answer beside it, named by the Ray
    node (two nodes may share a host name); returns the host's name.

    Made here, not defined at module level, so that Ray ships its code by value: a worker runs it without
    importing this package (and torch, ~2 s), and the probe costs each node a task, not an import."""
    def probe(path: str, token: str, node: str) -> str:
        import pathlib
        import socket

        host = socket.gethostname()
        try:
            file = pathlib.Path(path)
            seen = file.read_text() if file.is_file() else ""
            pathlib.Path(f"{path}.{node}").write_text(token if seen == token else "unseen")
        except OSError:  # the folder does not exist on this node, or is not writable: the driver sees no answer
            pass
        return host
    return probe


def check_shared_storage(ray: Any, out: Path) -> None:
    """Every alive node reads a file the driver wrote under ``out``, and the driver reads its answer back.

    ConfigError naming ``--out`` and the node otherwise: run folders and the report must be on storage
    that every node sees (a shared filesystem mounted at the same path). The nodes answer at once, not
    one after another.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    out.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    probe = out / f".storage-probe-{token[:8]}"
    probe.write_text(token)
    task = ray.remote(num_cpus=0)(_make_probe())
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        asked = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                 .remote(str(probe.resolve()), token, node["NodeID"]) for node in nodes]
        for node, host in zip(nodes, ray.get(asked)):
            answer = Path(f"{probe}.{node['NodeID']}")
            if not answer.is_file() or answer.read_text() != token:
                what = "could not read the driver's probe" if answer.is_file() else "wrote nothing the driver can see"
                raise ConfigError(f"--out {out.resolve()} is not shared with the Ray node {host} "
                                  f"({node.get('NodeManagerAddress')}): it {what} under --out. Put --out on a "
                                  "filesystem every node mounts at the same path")
            answer.unlink()
    finally:
        probe.unlink(missing_ok=True)
        for left in out.glob(f"{probe.name}.*"):  # answers not read after a failure
            left.unlink(missing_ok=True)


def _train_run(run: PlannedRun, device: str, nsd_tolerance: float) -> dict[str, Any]:
    """On a worker (through :func:`_call_task`): train and evaluate ``run`` under its folder's lock."""
    import torch

    from unetfamily.compare.identity import run_lock
    from unetfamily.compare.run import train_and_evaluate

    with run_lock(run.dir):  # waits while another compare trains it; a dead worker's lock is released by the OS
        _note_attempt(run.dir)
        return train_and_evaluate(run, torch.device(device), nsd_tolerance).to_dict()


def _note_attempt(run_dir: Path) -> None:
    """Append this attempt to ``attempts.log`` in the run folder (time, host, pid, and ``reuse``, ``resume`` or
    ``start``): Ray's retries leave a trace."""
    import socket

    what = ("reuse" if (run_dir / "result.json").is_file() else
            "resume" if (run_dir / "checkpoints" / "last.safetensors").is_file() else "start")
    with open(run_dir / ATTEMPTS, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {socket.gethostname()} {os.getpid()} {what}\n")


def _cause(exc: BaseException) -> BaseException:
    """The error a task raised, unwrapped from Ray's RayTaskError."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class RayExecutor:
    """A Ray session for one comparison: ``with RayExecutor(cfg, out) as ex: ex.train(runs); ex.call(fn, ...)``.

    Joins ``--ray-address`` (or starts a local instance, shut down on exit), checks that ``out`` is shared,
    and sizes each run's resources. ``table`` makes the live table from the runs' rows; ``estimate`` (the runs,
    one image's shape, the model's outputs), when given, is what the first warm worker estimates the runs' work
    from, to start the longest first.
    """

    def __init__(self, cfg: CompareConfig, out: Path, runs: int,
                 table: Callable[[list[RunRow]], LiveTable] = LiveTable, estimate: Estimate | None = None) -> None:
        self.cfg, self.out, self.runs, self.table, self.estimate = cfg, out, runs, table, estimate
        self.ray: Any = None
        self.started = False
        self._work: Any = None  # the first warm-up task: the runs' estimated work

    def __enter__(self) -> RayExecutor:
        self.ray, self.started = _connect(self.cfg)
        try:
            self.res = resources(self.cfg, self.ray.cluster_resources(), self.runs)
            check_shared_storage(self.ray, self.out)
            # workers import torch and the run code; the first estimates the runs' work once it has
            warm = self.ray.remote(_warm_up).options(num_cpus=self.res.cpus, num_gpus=self.res.gpus)
            self._warming = [warm.remote(self.estimate if i == 0 else None)
                             for i in range(min(self.runs, self.capacity()))]
            self._work = self._warming[0] if self.estimate is not None else None
        except BaseException:
            self.__exit__()
            raise
        log.info("Ray: %d CPU(s) and %g GPU(s) per run, on %s", self.res.cpus, self.res.gpus, self.res.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` submitted as one task with a run's resources (see :func:`_call_task`); its object ref."""
        task = self.ray.remote(_call_task).options(num_cpus=self.res.cpus, num_gpus=self.res.gpus,
                                                   max_retries=MAX_RETRIES, retry_exceptions=False)
        return task.remote(fn, args, self.res.cpus, os.getcwd(), _env())

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` as one task with a run's resources (e.g. measuring costs on a worker that trains)."""
        return self.ray.get(self._submit(fn, *args))

    def capacity(self) -> int:
        """How many runs the cluster's alive nodes hold at once now (nodes that join later count when they do)."""
        return max(1, sum(_slots(node.get("Resources", {}), self.res) for node in self.ray.nodes() if node.get("Alive")))

    def train(self, runs: list[PlannedRun],
              work: list[float] | None = None) -> tuple[list[RunResult | None], list[RunFailure]]:
        """Train every run as a task; (each run's result or None where it failed, the failures), in run order.

        Runs start in the order of ``work`` (each run's estimated work, see :mod:`~unetfamily.compare.run_order`;
        by default the first warm-up's estimate of ``estimate``), the largest first, as many at once as the
        cluster holds: Ray does not keep the order of queued tasks, so the driver submits the next run when
        one ends. Raises KeyboardInterrupt after cancelling the running tasks when the driver is interrupted
        (the runs not started are not submitted).
        """
        work = work if work is not None else self._estimated_work(len(runs))
        order = longest_first(work) if work is not None else list(range(len(runs)))
        submit = lambda i: self._submit(_train_run, runs[i], self.res.device, self.cfg.nsd_tolerance)  # noqa: E731
        return _collect(self.ray, runs, order, submit, self.capacity,
                        self.table([RunRow(run.label, run.dir) for run in runs]), self.demand)

    def _estimated_work(self, runs: int) -> list[float] | None:
        """The ``runs`` runs' estimated work from the first warm-up task (None without ``estimate``); counted here
        when that worker could not (it failed to import, or died) or is not warm within WARM_UP_WAIT_S (no node
        has room for it yet: an autoscaler, told the runs' demand first, may still be starting one)."""
        if self._work is None:
            return None
        self.demand(runs)
        work = None
        if self.ray.wait([self._work], timeout=WARM_UP_WAIT_S)[0]:
            try:
                _, work = self.ray.get(self._work)
            except Exception as exc:  # noqa: BLE001 - any failure of that task: the driver counts instead
                log.info("the first warm-up task failed (%s): the runs' work is estimated here", _one_line(exc))
        else:
            log.info("no worker warm after %d s: the runs' work is estimated here", WARM_UP_WAIT_S)
        return work if work is not None else estimated_work(*self.estimate)

    def demand(self, unfinished: int) -> None:
        """Tell a cluster's autoscaler the runs not finished yet, as if all were submitted (0: none left).

        The driver holds back what does not fit now (to keep the order), so the autoscaler would see no
        queued task to scale up for; Ray's ``request_resources`` states the demand instead. Nothing on a
        local instance, which cannot grow."""
        if self.cfg.ray_address is None:
            return
        from ray.autoscaler.sdk import request_resources

        bundle = {"CPU": float(self.res.cpus), **({"GPU": self.res.gpus} if self.res.gpus else {})}
        request_resources(bundles=[bundle] * unfinished)


def _slots(node: dict[str, float], res: Resources) -> int:
    """Runs of ``res`` that fit at once on a node with the resources ``node`` (Ray's ``Resources``)."""
    fits = [int(node.get("CPU", 0) // res.cpus)] if res.cpus else []
    if res.gpus:
        fits.append(int(node.get("GPU", 0) / res.gpus + 1e-9))
    return min(fits) if fits else 0


def _warm_up(estimate: Estimate | None = None) -> tuple[str | None, list[float] | None]:
    """On a worker: import what a run needs (torch, the models, the engine, the metrics), so the first run starts
    at once, then estimate the runs' work if ``estimate`` (runs, (C, H, W) image shape, classes) asks for it.
    The engine and the metrics are imported lazily by a run, and torch imports its compiler stack when
    the first optimiser is made (each ~1 s here); counting the runs' MACs on the meta device needs that
    stack too (torch runs some meta kernels through its Python references), so the estimate costs the worker
    little more and the driver, which starts no run before a worker is warm, nothing.

    Returns (the error or None, the runs' estimated work or None). Never raises (nobody may wait for it, and
    Ray would log an unretrieved error): a node that cannot import the package fails its runs, which report
    the error, and the driver estimates the work itself."""
    try:
        import torch

        import unetfamily.compare.run
        import unetfamily.engine.train
        import unetfamily.metrics  # noqa: F401

        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
        return None, None if estimate is None else estimated_work(*estimate)
    except Exception as exc:  # noqa: BLE001 - reported by the runs themselves
        return repr(exc), None


def _env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def _call_task(fn: Callable[..., Any], args: tuple[Any, ...], threads: int, cwd: str, env: dict[str, str]) -> Any:
    """On a worker: ``fn(*args)`` in the driver's working folder (relative data paths and run folders resolve as
    there), with its forwarded environment and ``threads`` torch threads; ``loader.num_workers: auto`` counts only
    those ``threads`` CPUs (Ray reserves them for the task without pinning it to them)."""
    import torch

    os.chdir(cwd)
    os.environ.update(env)
    os.environ[CPUS_ENV] = str(threads)
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, handlers=[stderr_handler()])
    return fn(*args)


def _collect(ray: Any, runs: list[PlannedRun], order: list[int], submit: Callable[[int], Any],
             capacity: Callable[[], int], live: LiveTable,
             demand: Callable[[int], None] = lambda n: None) -> tuple[list[RunResult | None], list[RunFailure]]:
    """Submit the runs in ``order``, at most ``capacity()`` at a time, and wait for every task, refreshing the live
    table; cancel the running ones on KeyboardInterrupt. ``demand(n)``: the number of unfinished runs whenever it
    changes, and 0 at the end."""
    results: list[RunResult | None] = [None] * len(runs)
    failures: list[RunFailure] = []
    queue, running, stated = list(reversed(order)), {}, None
    try:
        with live:
            while queue or running:
                if len(queue) + len(running) != stated:
                    stated = len(queue) + len(running)
                    demand(stated)
                room = capacity() - len(running) if queue else 0  # the cluster is asked only while runs wait
                for _ in range(min(len(queue), room)):
                    i = queue.pop()
                    running[submit(i)] = i
                done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in done:
                    i = running.pop(ref)
                    try:
                        results[i] = RunResult.from_dict(ray.get(ref))
                        live.rows[i].finish("done")
                    except Exception as exc:  # noqa: BLE001 - every task error is reported, none stops the rest
                        error = _one_line(_cause(exc))
                        failures.append(RunFailure(runs[i].label, str(runs[i].dir), error, runs[i].variant.id))
                        live.rows[i].finish("failed", error)
                        log.error("%s failed: %s", runs[i].label, error)
                live.refresh()
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)
        raise KeyboardInterrupt("compare interrupted; the runs still training were cancelled (their checkpoints "
                                "are kept): run the same command again to continue") from None
    finally:
        demand(0)
    return results, failures
