"""The masked-image-modeling study of notebook 12: membership inference against a masked autoencoder (Li, He,
Yu and Zhang 2024, "Membership Inference Attack Against Masked Image Modeling").

* :func:`train_models` pre-trains, as independent jobs on the executor, the **target** (on a seeded random
  half of the population images: its members), the **shadow** (the same recipe on a random half of the
  attacker's own images), the **reference models** of the calibrated attack (each on another random half of
  the population; :func:`population_masks`) and the **ablation targets** (the target's members, pre-trained
  for each of ``mim_epoch_sweep`` epochs and at each encoder size of ``mim_size_sweep``). Each job also
  measures its model's signals (:func:`measure`), and both are cached.
* The attack, as the paper does it: mask a query image with ``mim_attack_masks`` random masks at ratio
  ``mim_attack_ratio``, let the model reconstruct it, average the error on the masked patches (lower =
  member); the accuracy-maximising threshold is chosen on the shadow's members against its non-members.
* Baselines: the error on the **visible** patches (what the encoder merely passes through), an
  **encoder-only** attack without the decoder (the mean cosine similarity of the encoder's features of a
  query and ``mim_aug_views`` augmented views of it, as attacks on contrastive encoders do), and the **blind**
  baseline (the images alone, no model).
* Ablations (:func:`run_ablations`): the attacker's mask ratio and number of masks M on the target, and the
  pre-training epochs and encoder size (separately trained targets; threshold-free metrics, as no shadow of
  each recipe is trained).
* Beyond the paper (:func:`run_calibrated`): LiRA and RMIA on the reconstruction error, calibrated by the
  reference models.
* :func:`linear_probe`: the encoder is worth attacking when a linear classifier on its frozen features
  predicts a label of the world far above chance (and above the same probe on an untrained encoder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from m4i_utils.attacks.base import Signals
from m4i_utils.attacks.baselines import blind_baseline
from m4i_utils.attacks.metric_attack import ThresholdAttack
from m4i_utils.core.cache import Artifact, cached
from m4i_utils.core.config import Config, parse_mae_size
from m4i_utils.core.executor import run_jobs
from m4i_utils.core.metrics import AttackResult, compute_metrics
from m4i_utils.core.runstore import result_row
from m4i_utils.core.runtime import get_device, rng_for
from m4i_utils.data.mim_images import MimImages, load_mim_images
from m4i_utils.data.records import Corpus, Record
from m4i_utils.experiments.harness import evaluate, evaluate_lira_rmia
from m4i_utils.models import mae
from m4i_utils.models.clip import pairs_digest
from m4i_utils.signals.image_views import augmented_views

ARCHITECTURE = "mae-vit"
EXPERIMENT = "12_mim"


# ------------------------------------------------------------------------------------------------ the roles


def _halves(n: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    masks = np.zeros((rows, n), bool)
    for m in range(rows):
        masks[m, rng.permutation(n)[: n // 2]] = True
    return masks


def population_masks(cfg: Config) -> np.ndarray:
    """``(max(1, mim_calib_models), mim_population)`` bool: the population images each model pre-trains on,
    a seeded random half each; row 0 is the target's members, the others the reference models'."""
    return _halves(
        cfg.mim_population, max(1, cfg.mim_calib_models), rng_for(cfg.seed, "mim_population_masks")
    )


def shadow_mask(cfg: Config) -> np.ndarray:
    """``(mim_shadow,)`` bool: the attacker's images the shadow pre-trains on (a seeded random half)."""
    return _halves(cfg.mim_shadow, 1, rng_for(cfg.seed, "mim_shadow_mask"))[0]


@dataclass(frozen=True)
class MaeSpec:
    """One model of the study: its label, role, the images it pre-trains on and its recipe.

    ``images`` is ``"population"`` (members: row ``mask_row`` of :func:`population_masks`) or ``"shadow"``.
    """

    label: str
    role: str  # target | shadow | reference | ablation
    images: str
    mask_row: int
    epochs: int
    width: int
    layers: int
    seed: int


def model_specs(cfg: Config) -> list[MaeSpec]:
    """The target, the shadow, the reference models and the ablation targets (in that order)."""
    e, w, n_layers, s = cfg.mim_epochs, cfg.mim_width, cfg.mim_layers, cfg.seed
    specs = [MaeSpec("target", "target", "population", 0, e, w, n_layers, s),
             MaeSpec("shadow", "shadow", "shadow", 0, e, w, n_layers, s + 1)]  # fmt: skip
    specs += [MaeSpec(f"reference{m}", "reference", "population", m, e, w, n_layers, s + 1 + m)
              for m in range(1, cfg.mim_calib_models)]  # fmt: skip
    specs += [MaeSpec(f"target_{ep}ep", "ablation", "population", 0, ep, w, n_layers, s)
              for ep in cfg.mim_epoch_sweep if ep != e]  # fmt: skip
    for size in cfg.mim_size_sweep:
        width, layers = parse_mae_size(size)
        if (width, layers) != (w, n_layers):
            specs.append(
                MaeSpec(f"target_{width}x{layers}", "ablation", "population", 0, e, width, layers, s)
            )
    return specs


def training_images(cfg: Config, data: MimImages, spec: MaeSpec) -> tuple[np.ndarray, tuple[str, ...]]:
    """The images (and ids) ``spec`` pre-trains on."""
    if spec.images == "shadow":
        keep = np.flatnonzero(shadow_mask(cfg))
        return data.shadow[keep], tuple(data.shadow_ids[i] for i in keep)
    keep = np.flatnonzero(population_masks(cfg)[spec.mask_row])
    return data.population[keep], tuple(data.population_ids[i] for i in keep)


# ---------------------------------------------------------------------------------------------- the signals


def _mask_seed(cfg: Config, query_set: str) -> int:
    return int(rng_for(cfg.seed, "mim_attack_masks", query_set).integers(2**31))


def reconstruction_errors(model: mae.MAE, images: np.ndarray, ratio: float, masks: int,
                          seed: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Mean error on the masked and on the visible patches of each image under each of ``masks`` fixed
    random masks at ``ratio``: ``{"masked": (masks, n), "visible": (masks, n)}``.

    Mask ``r`` of image ``i`` depends only on ``(seed, r, i)`` (:func:`m4i_utils.models.mae.mask_noise`):
    every model is queried with the same masks, and the masks of two ratios are nested.
    """
    noise = mae.mask_noise(len(images), model.num_patches, masks, seed)
    err, mask = mae.patch_errors(model, images, noise, ratio)
    return {
        "masked": (err * mask).sum(-1) / mask.sum(-1),
        "visible": (err * (1 - mask)).sum(-1) / np.maximum((1 - mask).sum(-1), 1),
    }


def view_consistency(model: mae.MAE, images: np.ndarray, views: int, seed: int) -> np.ndarray:
    """Encoder-only signal: mean cosine similarity of the features of each image to those of ``views``
    augmented views of it (higher = more member-like), ``(n,)``."""
    v = augmented_views(images, views, seed)
    f = mae.features(model, v.reshape(-1, *images.shape[1:])).reshape(len(images), 1 + views, -1)
    f = f / np.linalg.norm(f, axis=-1, keepdims=True)
    return np.einsum("nd,nvd->nv", f[:, 0], f[:, 1:]).mean(axis=1)


def _query_sets(spec: MaeSpec) -> tuple[str, ...]:
    """The image sets a model is queried on: its own (population or shadow) and, for models pre-trained on
    the population, the attacker's images as RMIA's population records z."""
    return ("shadow",) if spec.images == "shadow" else ("population", "shadow")


def _sweeps(cfg: Config, spec: MaeSpec, query_set: str) -> tuple[tuple[float, ...], int]:
    """Mask ratios and the number of masks measured on ``query_set``: every ablation value where the target
    and the shadow are attacked (their own query set), the attack's setting everywhere else (the reference and
    ablation models, and the attacker's images as RMIA's population records)."""
    if spec.role in ("target", "shadow") and query_set == spec.images:
        ratios = tuple(dict.fromkeys((cfg.mim_attack_ratio, *cfg.mim_ratio_sweep)))
        return ratios, max((cfg.mim_attack_masks, *cfg.mim_masks_sweep))
    return (cfg.mim_attack_ratio,), cfg.mim_attack_masks


def measure(cfg: Config, spec: MaeSpec, model: mae.MAE, data: MimImages) -> dict[str, np.ndarray]:
    """Every signal of one model: ``<set>/<ratio>/masked|visible`` ``(masks, n)`` reconstruction errors and,
    for the target and the shadow, ``<set>/views`` encoder-only consistency."""
    out = {}
    for query_set in _query_sets(spec):
        images = getattr(data, query_set)
        ratios, masks = _sweeps(cfg, spec, query_set)
        for ratio in ratios:
            errs = reconstruction_errors(model, images, ratio, masks, _mask_seed(cfg, query_set))
            out |= {f"{query_set}/{ratio}/{k}": v for k, v in errs.items()}
        if spec.role in ("target", "shadow") and query_set == spec.images:
            seed = int(rng_for(cfg.seed, "mim_views", query_set).integers(2**31))
            out[f"{query_set}/views"] = view_consistency(model, images, cfg.mim_aug_views, seed)
    return out


@dataclass(frozen=True)
class TrainedMae:
    """A pre-trained model of the study, its training history and its signals (:func:`measure`)."""

    spec: MaeSpec
    n_train: int
    artifact: Artifact
    history: dict
    signals: dict[str, np.ndarray]


def _job(cfg: Config, spec: MaeSpec) -> TrainedMae:
    torch.set_num_threads(max(1, cfg.threads))
    data = load_mim_images(cfg)
    images, ids = training_images(cfg, data, spec)
    digest = pairs_digest(images, list(ids))
    art = mae.train_mae(cfg, images, digest, spec.seed, spec.label, spec.epochs, spec.width, spec.layers)

    def build(out: Path) -> None:
        np.savez(out / "signals.npz", **measure(cfg, spec, mae.load_mae(cfg, art), data))

    sweeps = {s: _sweeps(cfg, spec, s) for s in _query_sets(spec)}
    params = {"spec": spec.__dict__, "sweeps": sweeps, "views": cfg.mim_aug_views,
              "seed": cfg.seed, "sets": {s: pairs_digest(getattr(data, s), list(getattr(data, f"{s}_ids")))
                                         for s in _query_sets(spec)}}  # fmt: skip
    sig = cached(cfg.cache_dir, "mae_signals", params, build, upstream=[art.key],
                 code_modules=["m4i_utils.models.mae", "m4i_utils.signals.image_views"])  # fmt: skip
    with np.load(sig.file("signals.npz")) as z:
        signals = {k: z[k] for k in z.files}
    history = json.loads(art.file("history.json").read_text())
    return TrainedMae(spec, len(images), art, history, signals)


def train_models(cfg: Config) -> dict[str, TrainedMae]:
    """Every model of :func:`model_specs`, pre-trained and measured (or loaded from the cache) through the
    executor, by label."""
    load_mim_images(cfg)  # once, before the jobs read the cached world
    specs = model_specs(cfg)
    done = run_jobs(cfg, _job, [(cfg, s) for s in specs], desc="MAE models")
    return {m.spec.label: m for m in done}


# ----------------------------------------------------------------------------------------------- the attacks


def _meta(cfg: Config, model: TrainedMae, attack: str, setting: str) -> dict:
    s = model.spec
    return {"experiment": EXPERIMENT, "attack": attack, "setting": setting, "target": s.label,
            "dataset": cfg.mim_world if cfg.mim_source == "synthetic" else cfg.mim_source,
            "architecture": ARCHITECTURE, "profile": cfg.profile, "seed": cfg.seed, "n_train": model.n_train,
            "epochs": s.epochs, "width": s.width, "layers": s.layers}  # fmt: skip


def _row(cfg: Config, result: AttackResult) -> dict:
    return result_row(result, compute_metrics(result, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed))


def _error(model: TrainedMae, query_set: str, ratio: float, region: str, masks: int) -> np.ndarray:
    """Mean over the first ``masks`` masks of the error on ``region`` patches (``(n,)``)."""
    return model.signals[f"{query_set}/{ratio}/{region}"][:masks].mean(axis=0)


def labels(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Membership of the population images in the target and of the attacker's images in the shadow."""
    return population_masks(cfg)[0].astype(int), shadow_mask(cfg).astype(int)


def run_attacks(
    cfg: Config, data: MimImages, models: dict[str, TrainedMae]
) -> tuple[list[AttackResult], list[dict]]:
    """The paper's attack (masked-patch error, shadow threshold) and its baselines on the target."""
    target, shadow = models["target"], models["shadow"]
    y_t, y_s = labels(cfg)
    ids = np.asarray(data.population_ids)
    r, m = cfg.mim_attack_ratio, cfg.mim_attack_masks
    setting = f"iid ({cfg.mim_source})"
    attacks = {
        "reconstruction_error": ("masked", "grey-box (reconstruction)"),
        "visible_patch_error": ("visible", "grey-box (reconstruction)"),
    }
    results, rows = [], []
    for name, (region, access) in attacks.items():
        # lower error = member: the score is the negated error
        sh = Signals(-_error(shadow, "shadow", r, region, m), y_s)
        tg = Signals(-_error(target, "population", r, region, m), y_t, ids)
        meta = _meta(cfg, target, name, setting) | {"mask_ratio": r, "masks": m, "shadow": "shadow"}
        res, row = evaluate(cfg, ThresholdAttack(access), sh, tg, meta)
        results.append(res)
        rows.append(row)
    sh = Signals(shadow.signals["shadow/views"], y_s)
    tg = Signals(target.signals["population/views"], y_t, ids)
    meta = _meta(cfg, target, "encoder_view_consistency", setting) | {
        "views": cfg.mim_aug_views,
        "shadow": "shadow",
    }
    res, row = evaluate(cfg, ThresholdAttack("black-box (encoder features)"), sh, tg, meta)
    results.append(res)
    rows.append(row)
    members = Corpus(
        "members", tuple(Record(i, im, ()) for i, im, y in zip(ids, data.population, y_t, strict=True) if y)
    )
    nonmembers = Corpus(
        "non-members",
        tuple(Record(i, im, ()) for i, im, y in zip(ids, data.population, y_t, strict=True) if not y),
    )
    blind = blind_baseline(members, nonmembers, cfg.seed, _meta(cfg, target, "blind_baseline", setting))
    blind.meta["access"] = "none (data only)"
    blind_ids = np.asarray([r.id for r in members.records + nonmembers.records])
    blind = AttackResult(blind.scores, blind.labels, blind.threshold, blind.meta, blind_ids)
    results.append(blind)
    rows.append(_row(cfg, blind))
    return results, rows


def _shadow_attack(cfg: Config, models: dict[str, TrainedMae], data: MimImages, ratio: float, masks: int,
                   setting: str, extra: dict) -> tuple[AttackResult, dict]:  # fmt: skip
    """The paper's attack at one mask ratio and number of masks (the shadow measured at the same)."""
    y_t, y_s = labels(cfg)
    sh = Signals(-_error(models["shadow"], "shadow", ratio, "masked", masks), y_s)
    tg = Signals(
        -_error(models["target"], "population", ratio, "masked", masks), y_t, np.asarray(data.population_ids)
    )
    meta = _meta(cfg, models["target"], "reconstruction_error", setting) | {
        "mask_ratio": ratio,
        "masks": masks,
    }
    return evaluate(cfg, ThresholdAttack("grey-box (reconstruction)"), sh, tg, meta | extra)


def run_ablations(
    cfg: Config, data: MimImages, models: dict[str, TrainedMae]
) -> tuple[list[AttackResult], list[dict]]:
    """The paper's ablations on the target: the attacker's mask ratio and M (shadow thresholds), then the
    pre-training epochs and the encoder size (separately pre-trained targets, the target among them; their
    rows have no threshold: AUC and TPR at low FPR only).

    Each row's ``ablation`` and ``value`` say which factor it varies and to what.
    """
    results, rows = [], []
    for ratio in cfg.mim_ratio_sweep:
        res, row = _shadow_attack(cfg, models, data, ratio, cfg.mim_attack_masks, "ablation: mask ratio",
                                  {"ablation": "mask_ratio", "value": ratio})  # fmt: skip
        results.append(res)
        rows.append(row)
    for masks in cfg.mim_masks_sweep:
        res, row = _shadow_attack(cfg, models, data, cfg.mim_attack_ratio, masks, "ablation: masks",
                                  {"ablation": "masks", "value": masks})  # fmt: skip
        results.append(res)
        rows.append(row)
    y_t, _ = labels(cfg)
    ids = np.asarray(data.population_ids)
    target = models["target"].spec
    for factor, same in (("epochs", lambda s: (s.width, s.layers) == (target.width, target.layers)),
                         ("size", lambda s: s.epochs == target.epochs)):  # fmt: skip
        group = [m for m in models.values() if m.spec.role in ("target", "ablation") and same(m.spec)]
        for m in sorted(group, key=lambda m: (m.spec.epochs, m.spec.width * m.spec.layers)):
            value = m.spec.epochs if factor == "epochs" else f"{m.spec.width}x{m.spec.layers}"
            score = -_error(m, "population", cfg.mim_attack_ratio, "masked", cfg.mim_attack_masks)
            meta = _meta(cfg, m, "reconstruction_error", f"ablation: {factor}")
            meta |= {"mask_ratio": cfg.mim_attack_ratio, "masks": cfg.mim_attack_masks, "ablation": factor,
                     "value": value, "params": mae.encoder_parameters(cfg, m.spec.width, m.spec.layers),
                     "access": "grey-box (reconstruction)",
                     "final_train_loss": m.history["train_loss"][-1]}  # fmt: skip
            res = AttackResult(score, y_t, None, meta, ids)
            results.append(res)
            rows.append(_row(cfg, res))
    return results, rows


@dataclass
class CalibratedRun:
    """The calibrated attacks on the target: masked-patch errors of the target and every reference model
    on the population (``errors``, ``(models, n)``) and on the attacker's images (``errors_z``), the masks,
    results and rows."""

    errors: np.ndarray
    errors_z: np.ndarray
    masks: np.ndarray
    results: list[AttackResult]
    rows: list[dict]


def population_errors(cfg: Config, models: dict[str, TrainedMae],
                      query_set: str = "population") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The masked-patch errors (at the attack's ratio, mean over its masks) of the target and every reference
    model, ``(mim_calib_models, n)`` (row 0 the target), on the population (or on the attacker's images,
    ``query_set="shadow"``), and the population masks (:func:`population_masks`: which model pre-trained on
    which population image).
    """
    if cfg.mim_calib_models < 2:
        raise ValueError("mim_calib_models must be >= 2 for the calibrated attack (0 turns it off)")
    order = ["target"] + [f"reference{k}" for k in range(1, cfg.mim_calib_models)]
    r, m = cfg.mim_attack_ratio, cfg.mim_attack_masks
    return np.stack([_error(models[k], query_set, r, "masked", m) for k in order]), population_masks(cfg)


def run_calibrated(cfg: Config, data: MimImages, models: dict[str, TrainedMae]) -> CalibratedRun:
    """LiRA (offline / online, per-image and global variance) and RMIA (offline / online) on the masked-patch
    reconstruction error, with the ``mim_calib_models - 1`` reference models; beside the plain attack.

    LiRA works on ``-log(error)`` (a log error is close to Gaussian across models); RMIA on the
    probability-like ``exp(-error)`` with the attacker's images (which no model of the population pre-trains
    on) as its population records z. Decision rules are learnt with reference 1 playing the target.
    """
    err, masks = population_errors(cfg, models)
    err_z, _ = population_errors(cfg, models, "shadow")
    r, m = cfg.mim_attack_ratio, cfg.mim_attack_masks
    ids = np.asarray(data.population_ids)
    log_err = -np.log(err)
    prob, prob_z = np.exp(-err), np.exp(-err_z)
    access = "grey-box (reconstruction) + reference models"
    meta = _meta(cfg, models["target"], "", f"iid ({cfg.mim_source}) population (random halves)")
    meta |= {"mask_ratio": r, "masks": m, "n_references": cfg.mim_calib_models - 1}
    results, rows = evaluate_lira_rmia(cfg, log_err, prob, prob_z, masks, ids, meta, access)
    plain, plain_row = _shadow_attack(cfg, models, data, r, m, meta["setting"], {})
    return CalibratedRun(err, err_z, masks, [plain, *results], [plain_row, *rows])


def linear_probe(cfg: Config, data: MimImages, model: TrainedMae) -> dict[str, float] | None:
    """Linear probe of the frozen encoder on the probe images' label: a standardised logistic regression fit
    on the first half of the probe images and scored on the second, for the pre-trained encoder and for an
    untrained one of the same size; ``None`` when the source has no label."""
    if data.probe_labels is None:
        return None
    half = len(data.probe) // 2
    y = data.probe_labels
    out = {"label": data.label_name, "n_fit": half, "n_scored": len(y) - half,
           "majority_class": float(np.bincount(y[half:]).max() / (len(y) - half))}  # fmt: skip
    torch.manual_seed(cfg.seed)
    untrained = mae.build_mae(cfg, model.spec.width, model.spec.layers).to(get_device()).eval()
    for name, net in (("pretrained", mae.load_mae(cfg, model.artifact)), ("untrained", untrained)):
        f = mae.features(net, data.probe)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        clf.fit(f[:half], y[:half])
        out[f"{name}_accuracy"] = float(clf.score(f[half:], y[half:]))
    return out
