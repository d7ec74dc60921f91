"""The feature-based (FB) attack model (M4I section 3.2, appendix C.3).

An MLP with hidden layers 256 and 20 (ReLU) and a sigmoid output (paper) classifies MFE features
``z = F_img(image) - F_txt(generated caption)`` (:func:`m4i_utils.models.mfe.fb_features`) as member (>
0.5) or
non-member. It is trained on the SHADOW model's member / non-member features, then applied to the target's.

Choices the paper leaves open (ours): inputs standardised by a ``StandardScaler`` fitted on the shadow
features only; a stratified validation slice (``val_fraction``, default 20%) of the shadow features; Adam
(lr 1e-3), binary cross-entropy, mini-batches of 64, at most 200 epochs, early stopping when the validation
loss has not improved for ``patience`` (10) epochs, and the weights of the best validation epoch restored.
Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from m4i_utils.attacks.base import Attack
from m4i_utils.models.mfe import torch_threads
from m4i_utils.models.training import fit

HIDDEN = (256, 20)  # paper appendix C.3
THRESHOLD = float(np.nextafter(0.5, 1.0))  # member iff sigmoid output > 0.5 (AttackResult predicts >=)


def attack_mlp(in_dim: int, hidden: tuple[int, ...] = HIDDEN) -> nn.Sequential:
    """MLP in_dim -> 256 -> ReLU -> 20 -> ReLU -> 1 (logit; the sigmoid is applied outside)."""
    layers: list[nn.Module] = []
    prev = in_dim
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, 1))
    return nn.Sequential(*layers)


@dataclass
class FBAttackModel:
    """A trained FB attack model: scaler, MLP and its training history."""

    scaler: StandardScaler
    model: nn.Sequential
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    stopped_epoch: int = 0

    @torch.no_grad()
    def predict_proba(self, feats: np.ndarray) -> np.ndarray:
        """Sigmoid membership probability per row of ``feats``."""
        x = torch.as_tensor(self.scaler.transform(np.asarray(feats, dtype=np.float64)), dtype=torch.float32)
        self.model.eval()
        return torch.sigmoid(self.model(x)[:, 0]).numpy().astype(np.float64)


def _bce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y))


def train_attack_model(
    feats: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    *,
    hidden: tuple[int, ...] = HIDDEN,
    lr: float = 1e-3,
    batch_size: int = 64,
    max_epochs: int = 200,
    patience: int = 10,
    val_fraction: float = 0.2,
) -> FBAttackModel:
    """Train the FB attack MLP on shadow features with a stratified validation split and early stopping.

    Args:
        feats: N x d shadow features; labels: 1 = shadow member, 0 = shadow non-member.
        seed: seeds the split, the initialisation and the batch order.
    Returns:
        The :class:`FBAttackModel` with the best-validation-loss weights restored; ``history`` holds per-epoch
        ``train_loss`` and ``val_loss``, ``stopped_epoch`` the number of epochs run.
    """
    with torch_threads(1):
        return _train(feats, labels, seed, hidden, lr, batch_size, max_epochs, patience, val_fraction)


def _train(feats, labels, seed, hidden, lr, batch_size, max_epochs, patience, val_fraction) -> FBAttackModel:
    x = np.asarray(feats, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"feats must be N x d with one label per row, got {x.shape} and {y.shape}")
    if len(np.unique(y)) != 2:
        raise ValueError("need shadow members and non-members")
    tr, va = train_test_split(np.arange(len(y)), test_size=val_fraction, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x)
    xs = torch.as_tensor(scaler.transform(x), dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    x_tr, y_tr, x_va, y_va = xs[tr], yt[tr], xs[va], yt[va]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = attack_mlp(x.shape[1], hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def batches(_epoch: int, gen: torch.Generator):
        perm = torch.randperm(len(x_tr), generator=gen)
        return (perm[start : start + batch_size] for start in range(0, len(perm), batch_size))

    def step_loss(model: nn.Module, b: torch.Tensor):
        return nn.functional.binary_cross_entropy_with_logits(model(x_tr[b])[:, 0], y_tr[b]), len(b)

    # Early stopping (training.fit): best = the untrained model's validation loss; an epoch improves when it
    # lowers it by more than 1e-6; stop after ``patience`` epochs without improvement; restore the best.
    res = fit(model, opt, batches, step_loss, max_epochs, generator=gen, patience=patience, min_delta=1e-6,
              validate=lambda m, _epoch: _bce(m, x_va, y_va), desc="fb attack")  # fmt: skip
    hist = {"train_loss": res.history["train_loss"], "val_loss": res.history["val_loss"]}
    model.eval()
    return FBAttackModel(scaler, model, hist, res.best_epoch, res.stopped_epoch)


class MLPAttack(Attack):
    """FB M4I: the attack MLP trained on the shadow's features, applied to the target's (paper section 3.2).

    Score: the sigmoid output; decision rule: the paper's (member iff > 0.5). Diagnostics: ``fb_best_epoch``
    and ``fb_stopped_epoch`` of the early-stopped training.
    """

    name = "fb_mlp"
    access = "black-box (generated text) + attacker's feature extractor"
    threshold = THRESHOLD

    def __init__(self, seed: int = 0, **train_kwargs: Any) -> None:
        self.seed, self.train_kwargs, self.fitted = seed, train_kwargs, None

    @classmethod
    def from_config(cls, cfg, **options: Any) -> MLPAttack:
        """The ``fb_*`` training options and ``seed`` of ``cfg``; ``options`` override them."""
        kw = {"seed": cfg.seed, **fb_train_kwargs(cfg)}
        return cls(**(kw | options))

    def fit(self, x: np.ndarray, labels: np.ndarray) -> MLPAttack:
        self.fitted = train_attack_model(x, labels, self.seed, **self.train_kwargs)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.fitted.predict_proba(x)

    def diagnostics(self) -> dict[str, Any]:
        return {"fb_best_epoch": self.fitted.best_epoch, "fb_stopped_epoch": self.fitted.stopped_epoch}


def fb_train_kwargs(cfg) -> dict[str, Any]:
    """:func:`train_attack_model` options from a :class:`~m4i_utils.core.config.Config` (``fb_*`` fields)."""
    return {
        "lr": cfg.fb_lr,
        "batch_size": cfg.fb_batch_size,
        "max_epochs": cfg.fb_max_epochs,
        "patience": cfg.fb_patience,
        "val_fraction": cfg.fb_val_fraction,
    }
