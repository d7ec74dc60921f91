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
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm


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
    if cfg.executor == "inprocess" or len(jobs) <= 1:
        return [fn(*job) for job in tqdm(jobs, desc=desc, leave=False)]
    if cfg.executor not in ("local", "dask"):
        raise ValueError(f"executor={cfg.executor!r} is not valid; use inprocess, local or dask")
    from dask.distributed import Client, LocalCluster, as_completed

    if cfg.executor == "local":
        # each worker process trains with one thread; the variables are set only while the workers start
        saved = dict(os.environ)
        os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "M4I_THREADS": "1"})
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
        futures = [client.submit(fn, *job, pure=False) for job in jobs]
        for _ in tqdm(
            as_completed(futures), total=len(futures), desc=f"{desc} ({cfg.executor})", leave=False
        ):
            pass
        return client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
