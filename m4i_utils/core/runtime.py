"""Seeding and device selection: the one place that decides randomness and hardware."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch with ``seed`` and return a NumPy generator derived from it."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_for(seed: int, *labels: str | int) -> np.random.Generator:
    """An independent NumPy generator for a named purpose, e.g. ``rng_for(cfg.seed, "splits", "synth_coco")``.

    The stream depends only on the seed and the labels, so adding a new consumer never shifts another one.
    """
    words = [seed] + [int(hashlib.sha256(str(x).encode()).hexdigest()[:8], 16) for x in labels]
    return np.random.default_rng(np.random.SeedSequence(words))


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if available (or ``prefer``/``M4I_DEVICE`` if given), else CPU."""
    choice = prefer or os.environ.get("M4I_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_threads() -> int:
    """Number of CPU threads this process may use: ``M4I_THREADS`` when set (the executor's workers get 1),
    else the cores it may run on."""
    if os.environ.get("M4I_THREADS", "").isdigit() and int(os.environ["M4I_THREADS"]) > 0:
        return int(os.environ["M4I_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# glibc malloc settings for the processes the runner and the executor start (notebook kernels, Dask workers).
# With the defaults, every training step returns its freed activation buffers to the kernel and faults fresh
# zeroed pages back in; two trainings side by side then spend much of their time in the kernel. Keeping freed
# memory in the process (allocations under 32 MiB from the heap, no trimming below 4 GiB, the heap grown in
# 512 MiB steps) removes that churn. Measured with benchmarks/bench_executor.py (README, "Measured"). The
# values change only speed and resident memory, never a result: glibc reads them when a process starts, so
# they must be in the environment before it does. A value already in the environment wins.
ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30),
    "MALLOC_TOP_PAD_": str(512 * 2**20),
}


def allocator_env() -> dict[str, str]:
    """:data:`ALLOCATOR_ENV` with any value the user already set in the environment kept; nothing when
    ``M4I_ALLOCATOR=glibc`` (glibc's and Dask's own defaults, e.g. to compare, or where memory is tight)."""
    if os.environ.get("M4I_ALLOCATOR") == "glibc":
        return {}
    return {name: os.environ.get(name, value) for name, value in ALLOCATOR_ENV.items()}
