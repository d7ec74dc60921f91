"""Reference-model calibrated attacks: LiRA (Carlini et al. 2022) and RMIA (Zarifzadeh et al. 2024).

The paper's attacks compare every record's signal with one global threshold learnt on one shadow. Some images
are simply easy to caption and others hard, member or not; these attacks instead compare the target's signal
on a record with the same record's signals under reference models that did (IN) or did not (OUT) train on
it, so the per-record difficulty cancels.

Inputs (fit): ``x`` of shape ``(n_records, n_refs, d)`` (or ``(n_records, n_refs)``), the signal of every
population record under every reference model, and ``labels`` of shape ``(n_records, n_refs)``, 1 where the
reference trained on the record. ``score`` takes the target's signals ``(n_records, d)`` on the same records
in the same order. Signals must be on a scale where a Gaussian fits per record (LiRA): the experiment passes
logits of bounded similarity scores and mean token log-probabilities
(:mod:`m4i_utils.experiments.calibrated`).

Decision rule: like the paper's shadow-chosen threshold, the threshold is learnt without the target: the
first reference plays the target, the attack is fitted on the other references and the threshold maximising
accuracy on that reference's known membership is kept (:func:`m4i_utils.core.metrics.choose_threshold`); the
attack is then fitted on all references.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from m4i_utils.attacks.base import Attack
from m4i_utils.core.metrics import choose_threshold


def _as3d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[..., None] if x.ndim == 2 else x


def _check(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, labels = _as3d(x), np.asarray(labels)
    if x.ndim != 3 or labels.shape != x.shape[:2]:
        raise ValueError(
            f"reference signals must be (records, references[, d]) with labels (records, references); got "
            f"{np.shape(x)} and {labels.shape}"
        )
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError("reference labels must be 0 (OUT) or 1 (IN)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"reference signals contain {int(np.sum(~np.isfinite(x)))} non-finite values")
    return x, labels.astype(bool)


def _masked_stats(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record and dimension: mean and standard deviation of ``x`` over the references in ``mask``, and the
    number of such references (``x``: records x refs x d; ``mask``: records x refs)."""
    w = mask[..., None].astype(np.float64)
    n = w.sum(1)
    mean = (x * w).sum(1) / np.maximum(n, 1)
    var = (((x - mean[:, None, :]) ** 2) * w).sum(1) / np.maximum(n - 1, 1)
    return mean, np.sqrt(var), n[:, 0]


class _Calibrated(Attack):
    """Common fit: the threshold from a reference that plays the target, then the fit on all references."""

    def fit(self, x: np.ndarray, labels: np.ndarray) -> _Calibrated:
        x, labels = _check(x, labels)
        self._validate(x)
        self.n_references = x.shape[1]
        if x.shape[1] >= 2:  # the first reference plays the target, fitted on the others
            self._fit(x[:, 1:], labels[:, 1:], pseudo_target=True)
            pseudo = self.score(x[:, 0])
            y = labels[:, 0].astype(np.int64)
            self.threshold = choose_threshold(y, pseudo) if 0 < y.sum() < y.size else None
        self._fit(x, labels, pseudo_target=False)
        return self

    def _validate(self, x: np.ndarray) -> None:
        """Raise ValueError for reference signals this attack cannot use (``x``: records x refs x d)."""

    def _fit(self, x: np.ndarray, labels: np.ndarray, pseudo_target: bool) -> None:
        """Fit on the references ``x``; ``pseudo_target``: reference 0 of the full set plays the target."""
        raise NotImplementedError

    def diagnostics(self) -> dict[str, Any]:
        return {"n_references": self.n_references}


class LiRA(_Calibrated):
    """The likelihood-ratio attack with per-record Gaussians (Carlini et al. 2022, section IV).

    * offline (OUT references only): the one-sided test of how far above the OUT distribution the target's
      signal lies, ``sum_d (x - mu_out) / sd_out / sqrt(d)`` (Stouffer's combination over the signal's d
      dimensions, each treated as independent);
    * online (IN and OUT references): the log-likelihood ratio ``sum_d log N(x; mu_in, sd_in) - log
      N(x; mu_out, sd_out)``.

    ``global_variance``: one standard deviation per dimension for every record (pooled over records), which
    LiRA recommends with few references. Per-record standard deviations are floored at ``min_std``. A record
    with fewer than 2 OUT (or IN) references uses the pooled mean and standard deviation of all records.
    """

    def __init__(
        self,
        online: bool = False,
        global_variance: bool = False,
        min_std: float = 0.05,
        name: str | None = None,
        access: str = "black-box (generated text) + reference models",
    ) -> None:
        self.online = online
        self.global_variance = global_variance
        self.min_std = float(min_std)
        variant = ("online" if online else "offline") + ("_global_var" if global_variance else "")
        self.name = name or f"lira_{variant}"
        self.access = access
        self.threshold = None
        self.n_references = 0

    @classmethod
    def from_config(cls, cfg: Any, **options: Any) -> LiRA:
        return cls(**({"min_std": cfg.calib_min_std} | options))

    def _gaussian(self, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, sd, n = _masked_stats(x, mask)
        few = n < 2
        pooled_mean = x[mask].mean(0) if mask.any() else x.reshape(-1, x.shape[-1]).mean(0)
        pooled_sd = np.sqrt(np.mean(sd[~few] ** 2, axis=0)) if (~few).any() else x[mask].std(0)
        mean[few] = pooled_mean
        sd[few] = pooled_sd
        if self.global_variance:
            sd = np.broadcast_to(pooled_sd, sd.shape).copy()
        return mean, np.maximum(sd, self.min_std)

    def _fit(self, x: np.ndarray, labels: np.ndarray, pseudo_target: bool) -> None:
        self.out_ = self._gaussian(x, ~labels)
        self.in_ = self._gaussian(x, labels) if self.online else None

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        x = x[:, None] if x.ndim == 1 else x
        mu_out, sd_out = self.out_
        if x.shape != mu_out.shape:
            raise ValueError(f"target signals {x.shape} do not match the references' records {mu_out.shape}")
        z_out = (x - mu_out) / sd_out
        if not self.online:
            return z_out.sum(1) / math.sqrt(x.shape[1])
        mu_in, sd_in = self.in_
        z_in = (x - mu_in) / sd_in
        return (-0.5 * z_in**2 - np.log(sd_in) + 0.5 * z_out**2 + np.log(sd_out)).sum(1)


class RMIA(_Calibrated):
    """The relative membership inference attack (Zarifzadeh et al. 2024, section 3).

    ``Pr(x | theta)`` is a probability-like signal of the record under the target (the experiment uses the
    likelihood of the reference captions for the grey-box attack and the mean caption similarity for the
    black-box one). ``LR(x) = Pr(x | target) / Pr(x)`` with ``Pr(x)`` the mean over the references: over all
    of them online; offline (OUT only) ``((1 + a) mean_OUT + 1 - a) / 2``, the paper's linear correction for
    the missing IN models. The score of ``x`` is the fraction of population records ``z`` (never trained on
    by any model) with ``LR(x) / LR(z) >= gamma``.

    The population's signals are given at construction: ``z_target`` (the target's signal on each z) and
    ``z_references`` (``(n_z, n_refs)``, the references' on each z).
    """

    def __init__(
        self,
        z_target: np.ndarray,
        z_references: np.ndarray,
        online: bool = False,
        a: float = 0.3,
        gamma: float = 1.0,
        name: str | None = None,
        access: str = "black-box (generated text) + reference models",
    ) -> None:
        self.z_target = np.asarray(z_target, dtype=np.float64)
        self.z_references = np.asarray(z_references, dtype=np.float64)
        if self.z_references.ndim != 2 or self.z_references.shape[0] != self.z_target.shape[0]:
            raise ValueError(
                f"z_target {self.z_target.shape} and z_references {self.z_references.shape} must describe "
                "the same population records"
            )
        if np.any(self.z_target <= 0) or np.any(self.z_references <= 0):
            raise ValueError("RMIA needs positive probability-like signals")
        self.online, self.a, self.gamma = online, float(a), float(gamma)
        self.name = name or f"rmia_{'online' if online else 'offline'}"
        self.access = access
        self.threshold = None
        self.n_references = 0

    @classmethod
    def from_config(cls, cfg: Any, **options: Any) -> RMIA:
        return cls(**({"a": cfg.calib_rmia_a} | options))

    def _prior(self, x: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """``Pr(x)`` from the references' signals ``x`` (records x refs); ``labels`` None: all are OUT."""
        if self.online:
            return x.mean(1)
        out = np.ones_like(x, dtype=bool) if labels is None else ~labels
        n_out = out.sum(1)
        mean_out = np.where(n_out > 0, (x * out).sum(1) / np.maximum(n_out, 1), x.mean(1))
        return ((1 + self.a) * mean_out + 1 - self.a) / 2

    def _validate(self, x: np.ndarray) -> None:
        if x.shape[2] != 1:
            raise ValueError("RMIA takes one probability-like signal per record and reference")
        if np.any(x <= 0):
            raise ValueError("RMIA needs positive probability-like signals")
        if x.shape[1] != self.z_references.shape[1]:
            raise ValueError(
                f"{x.shape[1]} references for the records but {self.z_references.shape[1]} for the population"
            )

    def _fit(self, x: np.ndarray, labels: np.ndarray, pseudo_target: bool) -> None:
        # the population's signals under the same roles: reference 0 is the target when it plays it
        z_target, z_refs = self.z_target, self.z_references
        if pseudo_target:
            z_target, z_refs = z_refs[:, 0], z_refs[:, 1:]
        self.prior_x_ = self._prior(x[..., 0], labels)
        # z are never trained on: every reference is OUT for them
        self.log_lr_z_ = np.sort(np.log(z_target) - np.log(self._prior(z_refs, None)))

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape != self.prior_x_.shape:
            raise ValueError(
                f"target signals {x.shape} do not match the references' records {self.prior_x_.shape}"
            )
        if np.any(x <= 0):
            raise ValueError("RMIA needs positive probability-like signals")
        log_lr_x = np.log(x) - np.log(self.prior_x_)
        # fraction of z with LR(x) / LR(z) >= gamma, i.e. log LR(z) <= log LR(x) - log gamma
        count = np.searchsorted(self.log_lr_z_, log_lr_x - math.log(self.gamma), side="right")
        return count / self.log_lr_z_.size
