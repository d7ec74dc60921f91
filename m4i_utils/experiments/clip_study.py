"""The CLIP study of notebook 11: identity inference (Hintersdorf et al., JAIR 2024) and pair-level membership
inference (Ko et al., ICCV 2023) against CLIP-like models trained from scratch.

* :func:`train_models` trains, as independent jobs on the executor, the **main model** (the members'
  name-captioned images, the filler pairs and the name-only controls' captions) and the **size-sweep
  models** (filler pairs only, ``clip_size_sweep`` of them each), each cached
  (:func:`m4i_utils.models.clip.train_clip`).
* :func:`run_idia` runs the identity inference attack on the main model: top-1 zero-shot names of every
  attack image under every template, then ``clip_draws`` random draws of ``k`` images per person for each
  ``k`` of ``clip_k``; TPR / FPR / accuracy at ``tau`` against ``k`` and against ``N``, the ``tau`` ROC, and
  one result per ``N`` group (members of that group against all non-members), per pooled members, and for
  the name-only controls against the non-members.
* :func:`run_pairs` runs CSA, AEA and WSA, and the blind baseline, on one model in two labelled settings:
  ``iid`` (member pairs against held-out pairs of the same world: the valid membership question) and
  ``cross-corpus`` (against pairs of another world, as Ko et al. evaluated: measures distribution shift).
* :func:`run_calibrated` (beyond both papers): LiRA and RMIA on the CSA signal, with ``clip_calib_models``
  models each trained on ``clip_calib_base`` filler pairs plus a random half of the ``2 x clip_pair_queries``
  i.i.d. query pairs (model 0 is the target, the others are reference models), beside plain CSA on the same
  target.
* :func:`zero_shot_retrieval`: image-to-text top-1 retrieval among held-out pairs, so that we attack a model
  that works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from m4i_utils.attacks import clip_pairs, idia
from m4i_utils.attacks.baselines import blind_baseline
from m4i_utils.core.cache import Artifact
from m4i_utils.core.config import Config
from m4i_utils.core.executor import run_jobs
from m4i_utils.core.metrics import AttackResult, compute_metrics
from m4i_utils.core.runstore import result_row
from m4i_utils.core.runtime import rng_for
from m4i_utils.data.identity_world import StudyData, build_study_data
from m4i_utils.data.records import Corpus, Record
from m4i_utils.experiments.harness import evaluate_lira_rmia
from m4i_utils.models import clip
from m4i_utils.signals.image_views import augmented_views

ARCHITECTURE = "clip-vit"


@dataclass(frozen=True)
class TrainedClip:
    """A trained model of the study: its label, training-set composition and cached artifact."""

    label: str
    n_filler: int
    people: bool
    n_train: int
    artifact: Artifact


def model_specs(cfg: Config) -> list[tuple[str, int, bool]]:
    """``(label, filler pairs, with people)`` of every model: the main one, then the size sweep's."""
    return [("main", cfg.clip_filler, True)] + [(f"filler{s}", s, False) for s in cfg.clip_size_sweep]


def _train_job(cfg: Config, label: str, n_filler: int, people: bool) -> TrainedClip:
    torch.set_num_threads(max(1, cfg.threads))
    data = build_study_data(cfg)
    images, captions = data.training_pairs(n_filler, people)
    art = clip.train_clip(cfg, images, captions, cfg.seed, label)
    return TrainedClip(label, n_filler, people, len(captions), art)


def train_models(cfg: Config) -> list[TrainedClip]:
    """Every model of :func:`model_specs`, trained (or loaded from the cache) through the executor."""
    build_study_data(cfg)  # once, before the jobs read it from the cache
    jobs = [(cfg, *spec) for spec in model_specs(cfg)]
    return run_jobs(cfg, _train_job, jobs, desc="CLIP models")


def _meta(cfg: Config, model: TrainedClip, attack: str, setting: str, dataset: str) -> dict:
    return {"experiment": "11_clip", "attack": attack, "setting": setting, "target": model.label,
            "dataset": dataset, "architecture": ARCHITECTURE, "profile": cfg.profile, "seed": cfg.seed,
            "n_train": model.n_train}  # fmt: skip


def _evaluate(cfg: Config, result: AttackResult) -> dict:
    return result_row(result, compute_metrics(result, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed))


# ------------------------------------------------------------------------------------------- identity (IDIA)


@dataclass
class IdiaRun:
    """Identity inference on one model.

    Attributes:
        top1: ``(people, clip_attack_images, templates)`` top-1 candidate name per attack image and template.
        scores: ``k -> (draws, people)`` correct-template counts.
        by_k: TPR / FPR / accuracy at ``tau`` (members of every N pooled against non-members) per ``k``.
        by_group: share of each group predicted a member at ``tau``, per ``k`` (TPR for member groups, FPR
            for the non-members and the name-only controls).
        tau_curve: TPR / FPR for every ``tau`` at the largest ``k``.
        image_accuracy: per group, the share of single attack images whose top-1 name is right (mean over
            templates).
        results, rows: per-person results (score: correct templates at the largest k) and their rows.
    """

    top1: np.ndarray
    scores: dict[int, np.ndarray]
    by_k: pd.DataFrame
    by_group: pd.DataFrame
    tau_curve: pd.DataFrame
    image_accuracy: pd.Series
    results: list[AttackResult]
    rows: list[dict]


def idia_top1(cfg: Config, data: StudyData, model: TrainedClip) -> np.ndarray:
    """The zero-shot top-1 candidate name of every attack image under every template (IDIA's queries):
    ``(people, clip_attack_images, templates)`` name indices."""
    net = clip.load_clip(cfg, model.artifact)
    people, n_img = data.attack_images.shape[:2]
    img = clip.embed_images(net, data.attack_images.reshape(-1, *data.attack_images.shape[2:]))
    txt = clip.embed_texts(net, idia.prompts(data.names), cfg.clip_context)
    return idia.top1_names(img.reshape(people, n_img, -1), txt, len(data.names))


def run_idia(cfg: Config, data: StudyData, model: TrainedClip) -> IdiaRun:
    """IDIA on ``model`` (the main model: the one that saw the people)."""
    top1 = idia_top1(cfg, data, model)
    truth = np.asarray(data.name_index)
    group = np.asarray(data.group)
    evaluated = group != "name-only control"
    member = data.member
    scores, by_k, by_group = {}, [], []
    for k in cfg.clip_k:
        s = idia.draw_scores(top1, truth, k, cfg.clip_draws, rng_for(cfg.seed, "idia_draws", k))
        scores[k] = s
        by_k.append({"k": k, **idia.rates(s[:, evaluated], member[evaluated], cfg.clip_tau)})
        for g in dict.fromkeys(group):
            pred = s[:, group == g] >= cfg.clip_tau
            by_group.append({"k": k, "group": g, "predicted_member": float(pred.mean()),
                             "sd_over_draws": float(pred.mean(1).std()),
                             "people": int((group == g).sum())})  # fmt: skip
    k_max = max(cfg.clip_k)
    curve = pd.DataFrame(idia.tau_curve(scores[k_max][:, evaluated], member[evaluated]))
    hit = top1 == truth[:, None, None]
    image_accuracy = pd.Series({g: float(hit[group == g].mean()) for g in dict.fromkeys(group)})
    # per-person results at the largest k: the mean correct-template count over the draws
    person_score = scores[k_max].mean(0).astype(np.float64)
    dataset = "faces" if data.source == "synthetic" else "lfw"
    comparisons = [(f"N={n}", group == f"N={n}") for n in cfg.clip_inject_counts]
    comparisons.append(("all members", member))
    if (group == "name-only control").any():
        comparisons.append(("name-only control", group == "name-only control"))
    results, rows = [], []
    for name, positive in comparisons:
        keep = positive | (group == "non-member")
        meta = _meta(cfg, model, "idia", name, dataset) | {"k": k_max, "tau": cfg.clip_tau}
        meta["access"] = "black-box (top-1 zero-shot name)"
        ids = np.asarray([f"{dataset}/{i}" for i in np.asarray(data.person_ids)[keep]])
        res = AttackResult(person_score[keep], positive[keep].astype(int), float(cfg.clip_tau), meta, ids)
        results.append(res)
        rows.append(_evaluate(cfg, res))
    return IdiaRun(
        top1, scores, pd.DataFrame(by_k), pd.DataFrame(by_group), curve, image_accuracy, results, rows
    )


# ---------------------------------------------------------------------------------------------- pair level


@dataclass(frozen=True)
class PairSignals:
    """CSA / AEA signals and embeddings of one set of pairs under one model."""

    csa: np.ndarray
    aea: np.ndarray
    feats: np.ndarray  # image || text embeddings (WSA's input)


def pair_signals(cfg: Config, net, images: np.ndarray, captions: list[str], seed: int) -> PairSignals:
    """Signals of the pairs ``(images[i], captions[i])`` under ``net``."""
    txt = clip.embed_texts(net, list(captions), cfg.clip_context)
    views = augmented_views(images, cfg.clip_aug_views, seed)
    emb = clip.embed_images(net, views.reshape(-1, *images.shape[1:])).reshape(
        len(images), views.shape[1], -1
    )
    return PairSignals(clip_pairs.csa_scores(emb[:, 0], txt), clip_pairs.aea_scores(emb, txt),
                       np.concatenate([emb[:, 0], txt], axis=1))  # fmt: skip


def _corpus(name: str, ids: list[str], images: np.ndarray, captions: list[str]) -> Corpus:
    return Corpus(name, tuple(Record(i, im, (c,)) for i, im, c in zip(ids, images, captions, strict=True)))


def run_pairs(cfg: Config, data: StudyData, model: TrainedClip) -> tuple[list[AttackResult], list[dict]]:
    """CSA, AEA, WSA and the blind baseline on ``model`` in the ``iid`` and ``cross-corpus`` settings."""
    net = clip.load_clip(cfg, model.artifact)
    q = cfg.clip_pair_queries
    sig_seed = rng_for(cfg.seed, "aea_views", model.label).integers(2**31)
    mem = pair_signals(cfg, net, data.filler_images[:q], data.filler_captions[:q], int(sig_seed))
    known = pair_signals(cfg, net, data.known_images, data.known_captions, int(sig_seed) + 1)
    mem_corpus = _corpus(cfg.clip_filler_world, data.filler_ids[:q], data.filler_images[:q],
                         data.filler_captions[:q])  # fmt: skip
    settings = {
        "iid": (data.iid_ids, data.iid_images, data.iid_captions, cfg.clip_filler_world),
        "cross-corpus": (data.cross_ids, data.cross_images, data.cross_captions, cfg.clip_cross_world),
    }
    # the decision rules of CSA and AEA come from the known non-members alone: the same in both settings
    thr_csa = clip_pairs.nonmember_threshold(known.csa)
    thr_aea = clip_pairs.nonmember_threshold(known.aea)
    results, rows = [], []
    for i, (setting, (ids, images, captions, world)) in enumerate(settings.items()):
        non = pair_signals(cfg, net, images, list(captions), int(sig_seed) + 2 + i)
        labels = np.r_[np.ones(q, int), np.zeros(len(ids), int)]
        all_ids = np.asarray([f"{cfg.clip_filler_world}/{x}" for x in data.filler_ids[:q]]
                             + [f"{world}/{x}" for x in ids])  # fmt: skip
        csa = np.r_[mem.csa, non.csa]
        wsa, diag = clip_pairs.wsa_scores(np.concatenate([mem.feats, non.feats]), csa, known.feats, known.csa,
                                          seed=cfg.seed)  # fmt: skip
        for attack, scores, thr, extra in (
            ("csa", csa, thr_csa, {}),
            ("aea", np.r_[mem.aea, non.aea], thr_aea, {"views": cfg.clip_aug_views}),
            ("wsa", wsa, 0.5, diag),
        ):
            meta = _meta(cfg, model, attack, setting, cfg.clip_filler_world) | extra
            meta["access"] = "black-box (embeddings)"
            res = AttackResult(scores, labels, thr, meta, all_ids)
            results.append(res)
            rows.append(_evaluate(cfg, res))
        non_corpus = _corpus(world, list(ids), images, list(captions))
        blind_meta = _meta(cfg, model, "blind_baseline", setting, cfg.clip_filler_world)
        blind = blind_baseline(mem_corpus, non_corpus, cfg.seed, blind_meta)
        blind.meta["access"] = "none (data only)"
        blind = AttackResult(blind.scores, blind.labels, blind.threshold, blind.meta, all_ids)
        results.append(blind)
        rows.append(_evaluate(cfg, blind))
    return results, rows


def zero_shot_retrieval(cfg: Config, data: StudyData, model: TrainedClip) -> dict[str, float]:
    """Image-to-text top-1 retrieval among ``clip_pair_queries`` pairs: held-out (i.i.d. non-members) and
    trained (member queries), with chance ``1 / clip_pair_queries``."""
    net = clip.load_clip(cfg, model.artifact)
    q = cfg.clip_pair_queries
    out = {"model": model.label, "n_train": model.n_train, "chance": 1.0 / q}
    sets = {"held_out": (data.iid_images, data.iid_captions),
            "trained": (data.filler_images[:q], data.filler_captions[:q])}  # fmt: skip
    for name, (images, captions) in sets.items():
        img = clip.embed_images(net, images)
        txt = clip.embed_texts(net, list(captions), cfg.clip_context)
        # ties (repeated captions) count as right when any copy of the true caption wins
        best = np.argmax(img @ txt.T, axis=1)
        out[f"{name}_top1"] = float(np.mean([captions[b] == captions[i] for i, b in enumerate(best)]))
    return out


# ---------------------------------------------------------------------------- calibrated (reference models)


def calib_masks(cfg: Config) -> np.ndarray:
    """``(clip_calib_models, 2 * clip_pair_queries)`` bool: which population pairs (the member queries, then
    the i.i.d. non-member queries) each population model trains on; each takes a seeded random half."""
    n = 2 * cfg.clip_pair_queries
    rng = rng_for(cfg.seed, "clip_calib_masks")
    masks = np.zeros((cfg.clip_calib_models, n), bool)
    for m in range(cfg.clip_calib_models):
        masks[m, rng.permutation(n)[: n // 2]] = True
    return masks


def _csa(cfg: Config, net, images: np.ndarray, captions: list[str]) -> np.ndarray:
    return clip_pairs.csa_scores(
        clip.embed_images(net, images), clip.embed_texts(net, captions, cfg.clip_context)
    )


def _population(data: StudyData, q: int) -> tuple[np.ndarray, list[str], list[str]]:
    images = np.concatenate([data.filler_images[:q], data.iid_images])
    return (
        images,
        list(data.filler_captions[:q]) + list(data.iid_captions),
        data.filler_ids[:q] + data.iid_ids,
    )


def _calib_job(cfg: Config, m: int) -> TrainedClip:
    torch.set_num_threads(max(1, cfg.threads))
    data = build_study_data(cfg)
    q, base = cfg.clip_pair_queries, cfg.clip_calib_base
    images, captions, _ = _population(data, q)
    keep = np.flatnonzero(calib_masks(cfg)[m])
    train_imgs = np.concatenate([data.filler_images[q : q + base], images[keep]])
    train_caps = list(data.filler_captions[q : q + base]) + [captions[i] for i in keep]
    art = clip.train_clip(cfg, train_imgs, train_caps, cfg.seed + m, f"calib{m}")
    return TrainedClip(f"calib{m}", base, False, len(train_caps), art)


@dataclass
class CalibratedRun:
    """The calibrated attacks on the population target: models, the CSA signals of every model on the
    population and on RMIA's population records z (the known non-members), results and rows."""

    models: list[TrainedClip]
    masks: np.ndarray
    csa: np.ndarray
    csa_z: np.ndarray
    results: list[AttackResult]
    rows: list[dict]


def run_calibrated(cfg: Config, data: StudyData) -> CalibratedRun:
    """Train the population models (executor jobs, cached) and run LiRA (offline / online, per-pair and
    global variance) and RMIA (offline / online) on the CSA signal against model 0, beside plain CSA.

    LiRA works on ``atanh(CSA)`` (Fisher's z: a cosine similarity made roughly Gaussian); RMIA on the
    probability-like ``(1 + CSA) / 2``. RMIA's population records ``z`` are the known non-members, which no
    population model trains on.
    """
    if cfg.clip_calib_models < 2:
        raise ValueError("clip_calib_models must be >= 2 for the calibrated attack (0 turns it off)")
    build_study_data(cfg)
    models = run_jobs(
        cfg, _calib_job, [(cfg, m) for m in range(cfg.clip_calib_models)], desc="CLIP population"
    )
    q = cfg.clip_pair_queries
    images, captions, ids = _population(data, q)
    csa, csa_z = [], []
    for m in models:
        net = clip.load_clip(cfg, m.artifact)
        csa.append(_csa(cfg, net, images, captions))
        csa_z.append(_csa(cfg, net, data.known_images, list(data.known_captions)))
    csa, csa_z = np.stack(csa), np.stack(csa_z)
    masks = calib_masks(cfg)
    labels = masks[0].astype(int)
    fisher = np.arctanh(np.clip(csa, -0.999999, 0.999999))
    prob, prob_z = (1 + csa) / 2, (1 + csa_z) / 2
    target = models[0]
    meta = _meta(cfg, target, "", "iid population (random halves)", cfg.clip_filler_world)
    meta |= {"n_references": cfg.clip_calib_models - 1}
    all_ids = np.asarray([f"{cfg.clip_filler_world}/{i}" for i in ids])
    access = "black-box (embeddings) + reference models"
    results, rows = evaluate_lira_rmia(cfg, fisher, prob, prob_z, masks, all_ids, meta, access)
    plain = AttackResult(csa[0], labels, clip_pairs.nonmember_threshold(csa_z[0]),
                         meta | {"attack": "csa", "access": "black-box (embeddings)"}, all_ids)  # fmt: skip
    results.insert(0, plain)
    rows.insert(0, _evaluate(cfg, plain))
    return CalibratedRun(models, masks, csa, csa_z, results, rows)
