"""Defenses against M4I: DP-SGD, L2 regularisation and data augmentation (paper section 5, notebook 09).

Every defended captioner is trained on the same member data as its undefended twin and attacked by MB and FB
in the unrestricted scenario (iid setting) with a shadow trained by the same recipe (the unrestricted attacker
knows the training recipe, defense included; a data-only / constrained attacker would train an undefended
shadow, or one of another architecture, and is not run here).

- **L2** (weight decay) and **augmentation** (``train_augment``: one of ``augment_views`` cached augmented
  trunk-feature views per pair and step) are the ordinary captioner recipe with one field changed: they go
  through :func:`m4i_utils.models.captioner.get_captioner` (kind ``captioner``; the field enters its cache
  key).
- **DP-SGD** (Opacus) trains the trainable part on the frozen cached trunk features: ``nn.LSTM`` ->
  ``opacus.layers.DPLSTM``, the trainable ``BatchNorm1d`` -> ``GroupNorm``, Poisson sampling, flat clipping,
  noise calibrated by ``make_private_with_epsilon`` (kind ``defended_captioner``). **Privacy unit: the
  image** (all of its captions): one DP sample is an image; each time it is sampled one of its captions is
  drawn at random (data-independent), so a per-sample gradient depends on that image's data only. The
  attack's membership unit is the image, so the accountant's epsilon is directly comparable with the empirical
  bound of :func:`epsilon_lower_bound`. Budget: ``epochs x captions_per_image`` passes over the images,
  i.e. the same number of (image, caption) visits as the twin's ``epochs`` passes over the pairs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.metrics import AttackResult, compute_metrics
from m4i_utils.core.runstore import result_row
from m4i_utils.core.runtime import cpu_threads, rng_for
from m4i_utils.data.text import Vocabulary
from m4i_utils.experiments.attack_grid import ModelSpec, fb_featurizer, mb_featurizer, query_features
from m4i_utils.models.captioner import (
    CAPTIONER_FIELDS,
    TRAIN_ROLE,
    EncoderDecoder,
    TrainedCaptioner,
    get_captioner,
    make_optimizer,
)
from m4i_utils.models.trunks import features_for, load_bundle

DP_FIELDS = (
    "def_dp_delta",
    "def_dp_max_grad_norm",
    "def_dp_batch_size",
    "def_dp_norm_groups",
    "def_dp_passes",
)


@dataclass(frozen=True)
class Defense:
    """One defended training recipe: ``none``, ``dp`` (strength = target epsilon), ``l2`` (weight decay),
    ``augment`` (strength = augmented views per image)."""

    name: str
    strength: float = 0.0

    @property
    def label(self) -> str:
        if self.name == "none":
            return "none"
        if self.name == "dp":
            return f"dp_eps{self.strength:g}"
        if self.name == "l2":
            return f"l2_wd{self.strength:g}"
        return f"augment_{int(self.strength)}views"


def defense_sweep(cfg: Config) -> list[Defense]:
    """The profile's sweep: undefended, DP at each ``def_dp_epsilons``, L2 at each ``def_weight_decays``,
    and augmentation (if ``def_augment``)."""
    out = [Defense("none")]
    out += [Defense("dp", float(e)) for e in cfg.def_dp_epsilons]
    out += [Defense("l2", float(w)) for w in cfg.def_weight_decays]
    if cfg.def_augment:
        out.append(Defense("augment", float(cfg.augment_views)))
    return out


def defended_config(cfg: Config, defense: Defense) -> Config:
    """``cfg`` with the defense's training field set (L2: ``weight_decay``; augment: ``train_augment``)."""
    if defense.name == "l2":
        return dataclasses.replace(cfg, weight_decay=float(defense.strength))
    if defense.name == "augment":
        return dataclasses.replace(cfg, train_augment=True, augment_views=int(defense.strength))
    if defense.name in ("none", "dp"):
        return cfg
    raise ValueError(f"unknown defense {defense.name!r}; valid: none, dp, l2, augment")


def captioner_params(cfg: Config, dataset: str, family: str, role: str, defense: Defense) -> dict[str, Any]:
    """The parameters that key a defended captioner (all captioner fields of the defended config, plus the
    defense and, for DP, the DP fields)."""
    dcfg = defended_config(cfg, defense)
    params = {k: getattr(dcfg, k) for k in CAPTIONER_FIELDS}
    params.update(dataset=dataset, family=family, role=role, defense=defense.name, strength=defense.strength)
    if defense.name == "dp":
        params.update({k: getattr(cfg, k) for k in DP_FIELDS})
    return params


# ------------------------------------------------------------------------------------------- DP model


class DPEncoderDecoder(EncoderDecoder):
    """:class:`EncoderDecoder` with Opacus-compatible layers: ``DPLSTM`` and ``GroupNorm`` (REFERENCE 9)."""

    def __init__(
        self, feat_dim: int, vocab_size: int, embed_size: int = 256, hidden_size: int = 512, groups: int = 32
    ) -> None:
        from opacus.layers import DPLSTM

        super().__init__(feat_dim, vocab_size, embed_size, hidden_size)
        self.enc_bn = nn.GroupNorm(math.gcd(groups, embed_size), embed_size)
        self.lstm = DPLSTM(embed_size, hidden_size, num_layers=1, batch_first=True)


def caption_tensor(corpus, vocab: Vocabulary, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: padded token ids (N x C x L, C = most captions of an image) and caption counts (N)."""
    seqs = [[vocab.encode(c, max_len=max_len) for c in rec.captions] for rec in corpus.records]
    n_caps = torch.tensor([len(s) for s in seqs])
    length = max(len(t) for s in seqs for t in s)
    tokens = torch.zeros(len(seqs), int(n_caps.max()), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        for j, t in enumerate(s):
            tokens[i, j, : len(t)] = torch.tensor(t)
    return tokens, n_caps


def per_image_loss(model: nn.Module, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each sample's own mean token cross-entropy (no cross-sample normalisation, so
    a per-sample gradient depends on that sample only)."""
    length = int((tokens != 0).sum(1).max())
    tokens = tokens[:, :length]
    logits = model(feats, tokens)
    ce = nn.functional.cross_entropy(logits.transpose(1, 2), tokens, ignore_index=0, reduction="none")
    mask = (tokens != 0).float()
    return ((ce * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def train_dp(
    model: DPEncoderDecoder,
    feats: torch.Tensor,
    tokens: torch.Tensor,
    n_caps: torch.Tensor,
    cfg: Config,
    target_epsilon: float,
    epochs: int,
    seed: int = 0,
    desc: str = "dp",
) -> dict[str, Any]:
    """DP-SGD (Opacus, Poisson sampling) on per-image samples; returns the loss curve and the accountant's
    epsilon at ``cfg.def_dp_delta``.

    Args:
        feats: N x D frozen trunk features; tokens: N x C x L; n_caps: N captions per image.
        target_epsilon: the budget ``make_private_with_epsilon`` calibrates the noise for.
        epochs: passes over the images (expected).
    """
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(feats, tokens, n_caps), batch_size=cfg.def_dp_batch_size)
    engine = PrivacyEngine(accountant="prv")
    opt = make_optimizer(dataclasses.replace(cfg, weight_decay=0.0), model.parameters())
    dp_model, dp_opt, dp_loader = engine.make_private_with_epsilon(
        module=model,
        optimizer=opt,
        data_loader=loader,
        target_epsilon=target_epsilon,
        target_delta=cfg.def_dp_delta,
        epochs=epochs,
        max_grad_norm=cfg.def_dp_max_grad_norm,
    )
    hist: dict[str, Any] = {"train_loss": [], "epoch_seconds": [], "empty_batches": 0}
    for _ in tqdm(range(epochs), desc=desc, leave=False):
        start, total, n = time.time(), 0.0, 0
        dp_model.train()
        for f, t, k in dp_loader:
            if len(f) == 0:  # Poisson sampling drew nobody (probability (1-q)^N): no update
                hist["empty_batches"] += 1
                continue
            pick = (torch.rand(len(f), generator=gen) * k).long()
            loss = per_image_loss(dp_model, f, t[torch.arange(len(f)), pick])
            dp_opt.zero_grad()
            loss.backward()
            dp_opt.step()
            total, n = total + float(loss.detach()) * len(f), n + len(f)
        hist["train_loss"].append(total / max(n, 1))
        hist["epoch_seconds"].append(time.time() - start)
    hist.update(
        epsilon=float(engine.get_epsilon(cfg.def_dp_delta)),
        target_epsilon=float(target_epsilon),
        delta=float(cfg.def_dp_delta),
        noise_multiplier=float(dp_opt.noise_multiplier),
        sample_rate=float(1.0 / len(dp_loader)),
        steps=int(epochs * len(dp_loader)),
        epochs=int(epochs),
        privacy_unit="image (all its captions)",
    )
    return hist


def get_defended_captioner(
    cfg: Config, dataset: str, family: str, role: str, defense: Defense
) -> TrainedCaptioner:
    """Load or train the ``role`` captioner of ``dataset`` x ``family`` under ``defense`` (cached).

    ``none``, ``l2`` and ``augment`` are :func:`~m4i_utils.models.captioner.get_captioner` with the
    defended config
    (kind ``captioner``); ``dp`` is kind ``defended_captioner`` and its ``history`` carries the accountant's
    epsilon (``history["epsilon"]``), noise multiplier, sample rate and steps.
    """
    if defense.name != "dp":
        return get_captioner(defended_config(cfg, defense), dataset, family, role)
    if role not in TRAIN_ROLE:
        raise ValueError(f"unknown captioner role {role!r}; valid: {', '.join(TRAIN_ROLE)}")
    bundle = load_bundle(cfg, dataset)
    table = features_for(cfg, dataset, family)
    train = bundle.role(TRAIN_ROLE[role])
    params = captioner_params(cfg, dataset, family, role, defense)
    params["split_sizes"] = bundle.splits.sizes()

    def build(out: Path) -> None:
        torch.set_num_threads(cpu_threads())
        vocab = Vocabulary.build((c for r in train.records for c in r.captions), cfg.vocab_threshold)
        tokens, n_caps = caption_tensor(train, vocab, cfg.max_caption_len)
        feats = table.take(train)
        seed = int(
            rng_for(cfg.seed, "defended_captioner", dataset, family, role, defense.label).integers(2**31)
        )
        torch.manual_seed(seed)
        model = DPEncoderDecoder(
            feats.shape[-1], len(vocab), cfg.embed_size, cfg.hidden_size, cfg.def_dp_norm_groups
        )
        epochs = cfg.def_dp_passes or cfg.epochs * int(n_caps.max())
        hist = train_dp(model, feats, tokens, n_caps, cfg, defense.strength, epochs, seed, f"dp {role}")
        torch.save({"state": model.state_dict(), "feat_dim": feats.shape[-1]}, out / "model.pt")
        vocab.save(out / "vocab.json")
        (out / "history.json").write_text(json.dumps(hist))

    art = cached(
        cfg.cache_dir,
        "defended_captioner",
        params,
        build,
        upstream=[table.key, bundle.splits.key],
        code_modules=[
            "m4i_utils.models.captioner",
            "m4i_utils.models.trunks",
            "m4i_utils.experiments.defenses",
        ],
    )
    vocab = Vocabulary.load(art.file("vocab.json"))
    ckpt = torch.load(art.file("model.pt"), map_location="cpu", weights_only=True)
    model = DPEncoderDecoder(
        ckpt["feat_dim"], len(vocab), cfg.embed_size, cfg.hidden_size, cfg.def_dp_norm_groups
    )
    model.load_state_dict(ckpt["state"])
    return TrainedCaptioner(
        model=model.eval(),
        vocab=vocab,
        history=json.loads(art.file("history.json").read_text()),
        key=art.key,
        dataset=dataset,
        family=family,
        role=role,
        feature_key=table.key,
        build_seconds=float(art.manifest.get("build_seconds", 0.0)),
    )


# ------------------------------------------------------------------------------------------- attacks


def attack_defended(
    cfg: Config, target: TrainedCaptioner, shadow: TrainedCaptioner, defense: Defense, experiment: str
) -> tuple[list[AttackResult], list[dict]]:
    """MB (SVM) and FB (MLP) attacks on a defended target with its same-recipe shadow (unrestricted, iid).

    Returns the two results and their results-table rows (:data:`evaluation.RESULT_COLUMNS` plus the extra
    columns ``defense`` and ``defense_strength``).
    """
    from m4i_utils.attacks.feature_attack import fb_attack, fb_train_kwargs
    from m4i_utils.attacks.metric_attack import svm_attack

    t_spec = ModelSpec(target.dataset, target.family, "target")
    s_spec = ModelSpec(shadow.dataset, shadow.family, "shadow")
    caps = {t_spec: target, s_spec: shadow}

    def mb(sx, sy, tx, ty, meta):
        kw = dict(C=cfg.mb_svm_c, scale=cfg.mb_svm_scale, solver=cfg.mb_svm_solver, seed=cfg.seed)
        return svm_attack(sx, sy, tx, ty, meta, **kw)

    def fb(sx, sy, tx, ty, meta):
        return fb_attack(sx, sy, tx, ty, meta, seed=cfg.seed, **fb_train_kwargs(cfg))

    results, rows = [], []
    for name, featurize, attack in (
        ("mb_svm", mb_featurizer(cfg, captioners=caps), mb),
        ("fb_mlp", fb_featurizer(cfg, signed=True, captioners=caps), fb),
    ):
        sx, sy = query_features(cfg, s_spec, "iid", featurize, s_spec)
        tx, ty = query_features(cfg, t_spec, "iid", featurize, s_spec)
        meta = {
            "experiment": experiment,
            "attack": name,
            "scenario": "unrestricted",
            "setting": "iid",
            "shadow": s_spec.name,
            "target": t_spec.name,
            "dataset": t_spec.dataset,
            "architecture": t_spec.family,
            "profile": cfg.profile,
            "seed": cfg.seed,
            "defense": defense.label,
        }
        res = attack(sx, sy, tx, ty, meta)
        row = result_row(res, compute_metrics(res, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed))
        row.update(defense=defense.name, defense_strength=defense.strength)
        results.append(res)
        rows.append(row)
    return results, rows


# ------------------------------------------------------------------------------------------- DP audit


def epsilon_lower_bound(
    labels: np.ndarray, scores: np.ndarray, delta: float, confidence: float = 0.95, method: str = "cp"
) -> float:
    """Empirical epsilon lower bound implied by an attack's ROC (DP: TPR <= e^eps FPR + delta, REFERENCE 8).

    eps_lb = max over thresholds of max(log((TPR - delta) / FPR), log((1 - FPR - delta) / (1 - TPR))).
    ``method="cp"``: one-sided Clopper-Pearson bounds at ``confidence`` (TPR from below, FPR from above, per
    threshold, no multiple-testing correction): a conservative bound that respects
    finite samples. ``method="point"``: raw rates, only thresholds with FPR and 1 - TPR >= 1/n.

    Returns:
        The bound (0.0 when no threshold gives evidence).
    """
    from scipy.stats import beta
    from sklearn.metrics import roc_curve

    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    n_m, n_n = int(labels.sum()), int((1 - labels).sum())
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    tp, fp = np.rint(tpr * n_m), np.rint(fpr * n_n)
    if method == "cp":  # TPR (and so 1 - FNR) from below, FPR (and so 1 - TNR) from above
        a = 1.0 - confidence
        tpr_lo = np.where(tp > 0, beta.ppf(a, np.maximum(tp, 1), n_m - tp + 1), 0.0)
        fpr_hi = np.where(fp < n_n, beta.ppf(1 - a, fp + 1, np.maximum(n_n - fp, 1)), 1.0)
        fpr_a, fpr_b, tpr_a, tpr_b = fpr_hi, fpr_hi, tpr_lo, tpr_lo
    elif method == "point":  # raw rates; the denominator must hold at least one sample
        fpr_a = np.where(fp >= 1, fpr, np.nan)
        tpr_b = np.where(n_m - tp >= 1, tpr, np.nan)
        fpr_b, tpr_a = fpr, tpr
    else:
        raise ValueError(f"unknown method {method!r}; valid: cp, point")
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log((tpr_a - delta) / fpr_a)
        e2 = np.log((1.0 - fpr_b - delta) / (1.0 - tpr_b))
    vals = np.concatenate([e1, e2])
    vals = vals[np.isfinite(vals)]
    return float(max(0.0, vals.max())) if vals.size else 0.0


# ------------------------------------------------------------------------------------------- harness


@dataclass
class DefenseRun:
    """Everything notebook 09 reports for one defense: its captioners, attack results and table rows."""

    defense: Defense
    target: TrainedCaptioner
    shadow: TrainedCaptioner
    results: list[AttackResult]
    rows: list[dict]
    utility: dict[str, float]


def run_defense(cfg: Config, dataset: str, family: str, defense: Defense, experiment: str) -> DefenseRun:
    """Train (cached) the defended target and same-recipe shadow, measure utility on ``target_test`` and run
    the MB and FB attacks (unrestricted, iid)."""
    from m4i_utils.models.captioner import utility_table

    target = get_defended_captioner(cfg, dataset, family, "target", defense)
    shadow = get_defended_captioner(cfg, dataset, family, "shadow", defense)
    util = utility_table(cfg, [target]).iloc[0]
    utility = {k: float(util[k]) for k in ("bleu1", "bleu2", "bleu3", "bleu4", "rougeL")}
    results, rows = attack_defended(cfg, target, shadow, defense, experiment)
    for row in rows:
        row.update(utility)
    return DefenseRun(defense, target, shadow, results, rows, utility)


def summary_table(runs: list[DefenseRun], delta: float) -> pd.DataFrame:
    """One row per defense: utility, MB / FB accuracy, AUC (CI), TPR at 1% / 0.1% FPR, the accountant's
    epsilon (DP only) and the empirical epsilon lower bounds (Clopper-Pearson 95%, and point)
    of both attacks."""

    out = []
    for run in runs:
        row: dict[str, Any] = {"defense": run.defense.label, "kind": run.defense.name}
        row["strength"] = run.defense.strength
        row.update(run.utility)
        for res, r in zip(run.results, run.rows, strict=True):
            a = "mb" if r["attack"] == "mb_svm" else "fb"
            for m in ("accuracy", "auc", "auc_ci_low", "auc_ci_high", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"):
                row[f"{a}_{m}"] = r[m]
            row[f"{a}_eps_lb"] = epsilon_lower_bound(res.labels, res.scores, delta)
            row[f"{a}_eps_lb_point"] = epsilon_lower_bound(res.labels, res.scores, delta, method="point")
        row["accountant_epsilon"] = run.target.history.get("epsilon", math.inf)
        row["shadow_accountant_epsilon"] = run.shadow.history.get("epsilon", math.inf)
        row["noise_multiplier"] = run.target.history.get("noise_multiplier", 0.0)
        row["train_seconds"] = run.target.build_seconds
        out.append(row)
    return pd.DataFrame(out).set_index("defense")


def plot_privacy_utility(summary: pd.DataFrame):
    """ROUGE-L (x) vs attack AUC and vs TPR at 1% FPR (y), one curve per defense and attack, the undefended
    point marked with a star (paper section 5)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = {"dp": "#1f77b4", "l2": "#2ca02c", "augment": "#ff7f0e"}
    base = summary[summary.kind == "none"]
    for ax, metric, name in zip(axes, ("auc", "tpr_at_1pct_fpr"), ("AUC", "TPR at 1% FPR"), strict=True):
        for attack, style in (("mb", "-"), ("fb", "--")):
            for kind, color in colors.items():
                part = summary[summary.kind == kind].sort_values("strength")
                if not len(part):
                    continue
                part = pd.concat([base, part])
                ax.plot(
                    part.rougeL,
                    part[f"{attack}_{metric}"],
                    style,
                    marker="o",
                    color=color,
                    label=f"{attack.upper()} {kind}",
                )
                for label, r in part.iloc[1:].iterrows():
                    ax.annotate(label, (r.rougeL, r[f"{attack}_{metric}"]), fontsize=6)
            if len(base):
                ax.plot(
                    base.rougeL,
                    base[f"{attack}_{metric}"],
                    "*",
                    ms=14,
                    color="k",
                    label=f"{attack.upper()} undefended" if attack == "mb" else None,
                )
        if metric == "auc":
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("target ROUGE-L (test split)")
        ax.set_ylabel(f"attack {name}")
        ax.set_title(f"Privacy-utility: ROUGE-L vs {name} (solid MB, dashed FB)")
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
