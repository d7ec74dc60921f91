"""The one training loop of the project: :func:`fit` trains every torch model (captioners, R2Gen, TTS, MFE,
trunk pretraining, FB attack MLP, DP-SGD captioner). It is the only place that calls ``loss.backward()``.

What differs between models is passed in as callables:

* ``batches(epoch, generator) -> iterable``: the batches of one epoch (1-based ``epoch``), drawn from the
  loop's ``torch.Generator`` (or any other source of randomness the caller checkpoints, see below). Write it
  as a generator function when batches consume randomness lazily (e.g. a random view per batch): the loop
  interleaves batch drawing and optimisation steps exactly as a hand-written ``for`` loop would.
* ``step_loss(model, batch) -> (loss, weight[, metrics]) | None``: the loss of one batch, its weight in the
  epoch mean (e.g. the batch size, or 1 for a mean over steps) and optionally a dict of extra per-batch
  floats averaged the same way (``history[name]``). ``None`` skips the batch (no update; counted in
  ``history["skipped_batches"]``).

One step is ``zero_grad``; ``loss.backward()``; optional gradient-norm clipping; ``optimizer.step()``;
optional ``scheduler.step()``. The epoch's ``train_loss`` is ``sum(float(loss) * weight) / divisor`` with
``divisor = loss_divisor`` if given (e.g. the number of samples including skipped ones) else ``max(sum of
weights, 1)``.

Validation and early stopping: ``validate(model, epoch) -> float | None`` runs after each epoch (``None``: not
this epoch); values go to ``history["val_loss"]`` / ``history["val_epoch"]``. With ``patience`` the loop
stops early exactly as the FB attack always did: ``best`` starts at the validation loss of the untrained
model (epoch 0); an epoch improves when ``val < best - min_delta`` (its weights are copied), otherwise a
counter grows and training stops when it reaches ``patience``; at the end the best epoch's weights are
restored (if no epoch improved, the last weights are kept).

Checkpoints and resume: with ``checkpoint=<folder>`` the loop writes ``<folder>/checkpoint.pt`` atomically at
the end of every epoch: model and optimizer state, scheduler state, the loop's ``torch.Generator``, torch's
global RNG (dropout, Opacus' Poisson sampling and noise), the CUDA RNGs when CUDA is initialised, the numpy
``Generator`` passed as ``numpy_rng``, the ``state_dict`` of every object in ``extra_state`` (e.g. the Opacus
accountant), the history, the early-stopping state and the epoch index. Started again with the same folder
(after a kill), the loop loads it and continues with the next epoch; on one CPU thread it ends with
weights bit-identical to an uninterrupted run (on a GPU, only as deterministic as its kernels). The caller
must rebuild the model, optimizer, scheduler and generators exactly as the first time before calling
:func:`fit` (the checkpoint overwrites their state). Inside a cache builder, use the stable folder that
:func:`m4i_utils.core.cache.cached` passes to a builder with two parameters (``build(out, checkpoints)``;
removed once the artifact is complete).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1
_BASE_KEYS = {"train_loss", "epoch_seconds", "skipped_batches", "val_loss", "val_epoch"}

StepOutput = tuple[torch.Tensor, float] | tuple[torch.Tensor, float, Mapping[str, float]] | None


@dataclass
class FitResult:
    """What :func:`fit` returns.

    ``history``: per-epoch ``train_loss``, ``epoch_seconds``, ``skipped_batches``, extra metrics of
    ``step_loss``, and ``val_loss`` / ``val_epoch`` for the epochs validated. ``best_epoch``: the epoch whose
    weights the model holds with early stopping (0: untrained), else the last epoch. ``stopped_epoch``: the
    last epoch run. ``resumed_epoch``: the epoch the run resumed after (0: started fresh).
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    stopped_epoch: int = 0
    resumed_epoch: int = 0


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _cuda_rng() -> list[torch.Tensor] | None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.get_rng_state_all()
    return None


def load_checkpoint(folder: str | Path) -> dict[str, Any] | None:
    """The checkpoint :func:`fit` wrote in ``folder``, or None if there is none."""
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not a training checkpoint of version {CHECKPOINT_VERSION}")
    return ckpt


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int, torch.Generator | None], Iterable[Any]],
    step_loss: Callable[[nn.Module, Any], StepOutput],
    epochs: int,
    *,
    generator: torch.Generator | None = None,
    numpy_rng: np.random.Generator | None = None,
    scheduler: Any | None = None,
    clip_grad_norm: float | None = None,
    validate: Callable[[nn.Module, int], float | None] | None = None,
    patience: int | None = None,
    min_delta: float = 1e-6,
    loss_divisor: float | None = None,
    checkpoint: str | Path | None = None,
    extra_state: Mapping[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, list[float]]], None] | None = None,
    desc: str = "train",
    batch_progress: bool = False,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs (see the module docstring for the contract of each argument).

    Args:
        model: put in train mode at the start of every epoch (``validate`` may switch it to eval).
        optimizer: stepped once per non-skipped batch (any optimizer, e.g. Opacus' ``DPOptimizer``).
        batches: ``(epoch, generator) -> iterable`` of batches.
        step_loss: ``(model, batch) -> (loss, weight[, metrics])`` or ``None`` to skip the batch.
        epochs: total number of epochs (including those of a resumed checkpoint).
        generator: the loop's torch generator, handed to ``batches`` and checkpointed.
        numpy_rng: a numpy generator ``batches`` draws from (checkpointed).
        scheduler: stepped after every optimizer step (checkpointed).
        clip_grad_norm: clip the gradient norm of ``model.parameters()`` before each step.
        validate: ``(model, epoch) -> loss | None`` after every epoch; with ``patience``, also once before
            training (epoch 0) and it must return a float every epoch.
        patience: early stopping (FB attack semantics; the best epoch's weights are restored at the end).
        min_delta: an improvement must lower the validation loss by more than this.
        loss_divisor: divides the epoch's weighted loss sum (default: the sum of the weights, at least 1).
        checkpoint: folder of the per-epoch checkpoint; resumes from it when it holds one.
        extra_state: objects with ``state_dict`` / ``load_state_dict`` to checkpoint (e.g. an accountant).
        on_epoch_end: ``(epoch, history)`` after each epoch's checkpoint (e.g. to interrupt in tests).
        desc: label of the progress bar.
        batch_progress: also show a progress bar over each epoch's batches (slow epochs).
    """
    extra_state = dict(extra_state or {})
    early = patience is not None
    if early and validate is None:
        raise ValueError("early stopping (patience) needs a validate callable")
    history: dict[str, list[float]] = {"train_loss": [], "epoch_seconds": [], "skipped_batches": []}
    if validate is not None:
        history.update(val_loss=[], val_epoch=[])
    best, best_epoch, since, best_state, stopped = float("inf"), 0, 0, None, False
    start = 0
    folder = Path(checkpoint) if checkpoint is not None else None
    ckpt = load_checkpoint(folder) if folder is not None else None
    if ckpt is not None:
        if ckpt["epoch"] > epochs:
            raise ValueError(f"checkpoint {folder} is at epoch {ckpt['epoch']}, beyond the {epochs} asked")
        start = ckpt["epoch"]
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if generator is not None:
            generator.set_state(ckpt["generator"])
        if numpy_rng is not None:
            numpy_rng.bit_generator.state = ckpt["numpy_rng"]
        for name, obj in extra_state.items():
            obj.load_state_dict(ckpt["extra_state"][name])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        history = ckpt["history"]
        early_state = ckpt["early"]
        best, best_epoch = early_state["best"], early_state["best_epoch"]
        since, best_state = early_state["since"], early_state["state"]
        stopped = ckpt["stopped"]
    elif early:
        best = float(validate(model, 0))
    bar = tqdm(range(start + 1, epochs + 1), desc=desc, leave=False, initial=start, total=epochs)
    for epoch in bar if not stopped else ():
        t0 = time.time()
        model.train()
        total, weight_sum, skipped = 0.0, 0, 0
        metrics: dict[str, float] = {}
        it = batches(epoch, generator)
        if batch_progress:
            it = tqdm(it, desc=f"{desc} epoch {epoch}", leave=False)
        for batch in it:
            out = step_loss(model, batch)
            if out is None:
                skipped += 1
                continue
            loss, weight = out[0], out[1]
            optimizer.zero_grad()
            loss.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += float(loss.detach()) * weight
            weight_sum += weight
            for name, value in (out[2] if len(out) > 2 else {}).items():
                metrics[name] = metrics.get(name, 0.0) + value * weight
        divisor = loss_divisor if loss_divisor is not None else max(weight_sum, 1)
        history["train_loss"].append(total / divisor)
        for name in sorted(set(metrics) | (set(history) - _BASE_KEYS)):  # keep the lists epoch-aligned
            history.setdefault(name, [0.0] * (len(history["train_loss"]) - 1))
            history[name].append(metrics.get(name, 0.0) / divisor)
        history["skipped_batches"].append(skipped)
        history["epoch_seconds"].append(time.time() - t0)
        if validate is not None:
            val = validate(model, epoch)
            if val is not None:
                history["val_loss"].append(val)
                history["val_epoch"].append(epoch)
            if early:
                if val < best - min_delta:
                    best, best_epoch, since = val, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    since += 1
                    stopped = since >= patience
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            state = {
                "version": CHECKPOINT_VERSION,
                "epoch": epoch,
                "stopped": stopped,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "generator": generator.get_state() if generator is not None else None,
                "numpy_rng": numpy_rng.bit_generator.state if numpy_rng is not None else None,
                "extra_state": {name: obj.state_dict() for name, obj in extra_state.items()},
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": _cuda_rng(),
                "history": history,
                "early": {"best": best, "best_epoch": best_epoch, "since": since, "state": best_state},
            }
            _save_atomic(state, folder / CHECKPOINT_FILE)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
        if stopped:
            break
    bar.close()
    if early and best_state is not None:
        model.load_state_dict(best_state)
    last = len(history["train_loss"])
    return FitResult(history, best_epoch if early else last, last, start)
