"""The one executor for independent jobs (the grid's captioners, later reference models and grids).

``cfg.executor`` chooses where jobs run; the results are the same either way, because every job is a pure
function of its arguments that writes its artifact into the shared cache (:mod:`m4i_utils.core.cache`,
atomic and safe for concurrent builders) and the caller then loads it:

* ``"inprocess"`` (default): one after another in this process.
* ``"local"``: a Dask ``LocalCluster`` of ``cfg.workers`` single-threaded worker processes on this machine.
* ``"dask"``: the Dask distributed scheduler at ``cfg.dask_address`` (e.g. a cluster started with
  ``dask scheduler`` / ``dask worker`` or dask-jobqueue on Slurm); the workers must see the same cache folder
  and repository.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from m4i_utils.core.runtime import allocator_env


def run_jobs(cfg: Any, fn: Callable, jobs: Sequence[tuple], desc: str = "jobs") -> list:
    """``[fn(*job) for job in jobs]`` on the executor ``cfg.executor`` (results in job order).

    Args:
        cfg: the run's config (``executor``, ``workers``, ``dask_address``).
        fn: a module-level (picklable) function.
        jobs: argument tuples, one per job.
        desc: progress-bar label.
    Raises:
        ValueError: unknown executor.
    """
    graph = {i: Task(fn, tuple(job)) for i, job in enumerate(jobs)}
    done = run_graph(cfg, graph, desc)
    return [done[i] for i in range(len(jobs))]


@dataclass(frozen=True)
class Task:
    """One job of a :func:`run_graph`: ``fn(*args)``, started only after the tasks named in ``after``."""

    fn: Callable
    args: tuple = ()
    after: tuple[Hashable, ...] = ()


def _call_after(fn: Callable, args: tuple, *_done: Any) -> Any:
    """Run ``fn(*args)``; the extra arguments are the finished prerequisites (Dask waits for them)."""
    return fn(*args)


def run_graph(cfg: Any, tasks: dict[Hashable, Task], desc: str = "jobs") -> dict[Hashable, Any]:
    """Run independent jobs with prerequisites (e.g. pretrain a trunk -> its features -> the captioners that
    read them) on the executor ``cfg.executor``; returns ``{name: result}``.

    ``tasks`` is in a topological order (a task's prerequisites come before it). In-process, the tasks run
    in that order; on Dask, a task is scheduled as soon as its prerequisites are done, and earlier tasks
    have priority, so a long job listed first (trunk pretraining) runs beside the jobs that do not need it.
    Each job is a pure function of its arguments that writes its artifact into the shared cache, so the
    results are the same either way.

    Raises:
        ValueError: unknown executor, or a task that names a prerequisite not listed before it.
    """
    seen: set = set()
    for name, task in tasks.items():
        missing = [a for a in task.after if a not in seen]
        if missing:
            raise ValueError(f"task {name!r} runs after {missing!r}, which are not listed before it")
        seen.add(name)
    if cfg.executor == "inprocess" or len(tasks) <= 1:
        return {name: t.fn(*t.args) for name, t in tqdm(tasks.items(), desc=desc, leave=False)}
    if cfg.executor not in ("local", "dask"):
        raise ValueError(f"executor={cfg.executor!r} is not valid; use inprocess, local or dask")
    from dask.distributed import Client, LocalCluster, as_completed

    if cfg.executor == "local":
        # each worker process trains with one thread and the malloc settings of runtime.ALLOCATOR_ENV; the
        # variables are set only while the workers start (they also take precedence over Dask's own
        # pre-spawn default of a 64 KiB trim threshold)
        saved = dict(os.environ)
        one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "M4I_THREADS": "1"}
        os.environ.update(one_thread | allocator_env())
        try:
            cluster = LocalCluster(
                n_workers=cfg.workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)
        client = Client(cluster)
    else:
        cluster, client = None, Client(cfg.dask_address)
    try:
        futures: dict = {}
        for name, t in tasks.items():
            deps = [futures[a] for a in t.after]
            futures[name] = client.submit(_call_after, t.fn, t.args, *deps, pure=False)
        for _ in tqdm(
            as_completed(list(futures.values())),
            total=len(futures),
            desc=f"{desc} ({cfg.executor})",
            leave=False,
        ):
            pass
        return dict(zip(futures, client.gather(list(futures.values())), strict=True))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
