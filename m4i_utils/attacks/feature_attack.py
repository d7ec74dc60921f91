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

from m4i_utils.core.metrics import AttackResult
from m4i_utils.models.mfe import torch_threads

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
    best, best_state, best_epoch, since = _bce(model, x_va, y_va), None, 0, 0
    hist: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for start in range(0, len(perm), batch_size):
            b = perm[start : start + batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(model(x_tr[b])[:, 0], y_tr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        val = _bce(model, x_va, y_va)
        hist["train_loss"].append(total / len(perm))
        hist["val_loss"].append(val)
        if val < best - 1e-6:
            best, best_epoch, since = val, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FBAttackModel(scaler, model, hist, best_epoch, epoch)


def fb_attack(
    shadow_feats: np.ndarray,
    shadow_labels: np.ndarray,
    target_feats: np.ndarray,
    target_labels: np.ndarray,
    meta: dict[str, Any] | None = None,
    seed: int = 0,
    **train_kwargs: Any,
) -> AttackResult:
    """FB M4I: train the attack MLP on the shadow's features, score the target's (paper section 3.2).

    Args:
        shadow_feats, shadow_labels: shadow member (1) / non-member (0) MFE features.
        target_feats, target_labels: the target's features and ground truth (labels only for evaluation).
        meta: result metadata (``attack`` defaults to ``"FB"``).
        seed: seeds the attack model.
        train_kwargs: :func:`train_attack_model` options (lr, batch_size, max_epochs, patience, ...).
    Returns:
        :class:`AttackResult` with score = the sigmoid output and the paper's decision rule (member iff
        > 0.5); ``meta`` gains ``fb_best_epoch`` and ``fb_stopped_epoch``.
    """
    fitted = train_attack_model(shadow_feats, shadow_labels, seed, **train_kwargs)
    meta = {"attack": "FB", **(meta or {})}
    meta.update(fb_best_epoch=fitted.best_epoch, fb_stopped_epoch=fitted.stopped_epoch)
    return AttackResult(fitted.predict_proba(target_feats), np.asarray(target_labels), THRESHOLD, meta)


def fb_train_kwargs(cfg) -> dict[str, Any]:
    """:func:`train_attack_model` options from a :class:`~m4i_utils.core.config.Config` (``fb_*`` fields)."""
    return {
        "lr": cfg.fb_lr,
        "batch_size": cfg.fb_batch_size,
        "max_epochs": cfg.fb_max_epochs,
        "patience": cfg.fb_patience,
        "val_fraction": cfg.fb_val_fraction,
    }
