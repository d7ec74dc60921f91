"""Reference-model calibrated attacks on image captioners, beside the paper's attacks (notebook 10).

Protocol (LiRA's evaluation, Carlini et al. 2022, section V), per run:

* **Population**: the records of the first dataset's target and shadow roles
  (:data:`m4i_utils.data.splits.POPULATION_ROLES`, i.i.d. draws of one distribution). ``calib_models``
  captioners of the first family train on independent random halves of it
  (:func:`m4i_utils.data.splits.population_masks`): model 0 is the **target**, the others are **reference
  models** whose membership masks the attacker knows. RMIA's population records ``z`` are
  ``calib_population_z`` records no model trained on (``target_test``, then ``public``).
* **Signals** of every model on every population record and every ``z``:
  black-box, the similarity of the greedy caption to the references (``mb_features``: BLEU-1/2/3, ROUGE-L);
  grey-box, the mean token log-probability of the reference captions (:mod:`m4i_utils.signals.likelihood`);
  and the FB distance ``||F_img - F_txt||`` of the attacker's MFE (paper section 3.2).
* **Attacks on the same target**: the paper's MB SVM and FB MLP with reference model 1 as their shadow, the
  single-metric thresholds, the blind baseline, and LiRA offline / online (with and without a global
  variance) and RMIA offline / online on each signal (:mod:`m4i_utils.attacks.calibrated`). All go through
  the one harness (:func:`m4i_utils.experiments.harness.evaluate`).

Transforms (what makes per-record scores near-Gaussian for LiRA): a similarity ``s`` in [0, 1] enters as
``logit(clip(s, 0.01, 0.99))``, one dimension per metric; the mean token log-probability enters as it is (a
mean of many log-probabilities); the FB distance enters negated (higher = closer = more likely a member).
RMIA needs a probability-like signal: ``exp`` of the mean token log-probability (grey-box), the mean of the
similarity metrics floored at 0.001 (black-box), ``exp(-distance)`` (FB).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from m4i_utils.attacks.base import Signals
from m4i_utils.attacks.calibrated import RMIA, LiRA
from m4i_utils.core.config import Config
from m4i_utils.core.metrics import AttackResult
from m4i_utils.data.bundles import load_bundle
from m4i_utils.data.records import Corpus
from m4i_utils.data.splits import POPULATION_ROLES, population_masks
from m4i_utils.experiments.harness import evaluate
from m4i_utils.models.captioner import TrainedCaptioner, get_captioner_on

CLIP = 0.01  # similarity scores are clipped to [CLIP, 1 - CLIP] before the logit
PROB_FLOOR = 1e-3  # floor of the black-box probability-like signal of RMIA


@dataclass(frozen=True)
class Population:
    """The records the target and the reference models train on (random halves), and RMIA's ``z``.

    Attributes:
        dataset: the dataset the records come from.
        corpus: the population records (the roles of :data:`POPULATION_ROLES`, in that order).
        z: population records no model trains on (``target_test``, then ``public``).
        masks: ``(n_models, n_records)`` membership; row 0 is the target's.
    """

    dataset: str
    corpus: Corpus
    z: Corpus
    masks: np.ndarray

    @property
    def n_models(self) -> int:
        return self.masks.shape[0]

    @property
    def queried(self) -> Corpus:
        """Every record the attacker queries: the population's, then the ``z`` records."""
        return Corpus(f"{self.dataset}:population+z", self.corpus.records + self.z.records)

    @property
    def queried_key(self) -> str:
        """A hash of the queried records' ids (what their cached signals are keyed by)."""
        return hashlib.sha256("\n".join(self.queried.ids).encode()).hexdigest()[:16]

    def members(self, model: int) -> Corpus:
        return self.corpus.subset(np.flatnonzero(self.masks[model]), name=f"{self.dataset}:pop{model}")


def build_population(cfg: Config, dataset: str | None = None) -> Population:
    """The run's population of ``dataset`` (default: the first of ``cfg.datasets``), seeded by ``cfg.seed``.

    Raises:
        ValueError: fewer than ``calib_population_z`` records outside the population.
    """
    dataset = dataset or cfg.datasets[0]
    bundle = load_bundle(cfg, dataset)
    records = tuple(r for role in POPULATION_ROLES for r in bundle.role(role).records)
    outside = bundle.role("target_test").records + bundle.role("public").records
    if len(outside) < cfg.calib_population_z:
        raise ValueError(
            f"calib_population_z={cfg.calib_population_z} but {dataset} has only {len(outside)} records "
            "outside the population (target_test + public); lower calib_population_z"
        )
    corpus = Corpus(f"{dataset}:population", records)
    z = Corpus(f"{dataset}:population_z", tuple(outside[: cfg.calib_population_z]))
    return Population(dataset, corpus, z, population_masks(len(corpus), cfg.calib_models, cfg.seed, dataset))


def _model_job(cfg: Config, dataset: str, family: str, model: int) -> str:
    """Executor job: train (or find) population model ``model`` in the cache; returns its key."""
    return population_model(cfg, build_population(cfg, dataset), family, model).key


def population_model(cfg: Config, pop: Population, family: str, model: int) -> TrainedCaptioner:
    """Model ``model`` of the population (0: the target), trained on its half (cached)."""
    role = "target" if model == 0 else "reference"
    return get_captioner_on(cfg, pop.dataset, family, pop.members(model), f"pop{model}", role)


def train_population(cfg: Config, pop: Population, family: str) -> list[TrainedCaptioner]:
    """Every population model; independent jobs on the executor (:func:`m4i_utils.core.executor.run_jobs`)."""
    from m4i_utils.core.executor import run_jobs

    run_jobs(cfg, _model_job, [(cfg, pop.dataset, family, m) for m in range(pop.n_models)], "population")
    return [population_model(cfg, pop, family, m) for m in range(pop.n_models)]


# ------------------------------------------------------------------------------------------- signals


@dataclass
class ModelSignals:
    """One model's signals on the population records followed by the ``z`` records (rows in that order).

    Attributes:
        captions: the greedy captions.
        similarity: ``(n, len(mb_features))`` similarity of each caption to the record's references.
        logprob: mean token log-probability of the reference captions (grey-box).
        fb: ``F_img - F_txt(caption)`` of the attacker's MFE (:attr:`fb_distance`: its norm).
        views: similarities and agreements of the captions of augmented views (:func:`view_signals`).
    """

    captions: list[str]
    similarity: np.ndarray
    logprob: np.ndarray
    fb: np.ndarray
    views: np.ndarray | None = None  # :func:`view_signals` (None when calib_views = 0)

    @property
    def fb_distance(self) -> np.ndarray:
        return np.linalg.norm(self.fb, axis=1)


def record_features(cfg: Config, dataset: str, family: str, corpus: Corpus) -> torch.Tensor:
    """Frozen-trunk features (cached tables) of ``corpus``'s records, from the captioner roles or public."""
    from m4i_utils.models.mfe import public_features
    from m4i_utils.models.trunks import features_for

    tables = (features_for(cfg, dataset, family), public_features(cfg, dataset, family))
    out = []
    for rec in corpus.records:
        table = next((t for t in tables if rec.id in t.row), None)
        if table is None:
            raise KeyError(f"no cached {family} features for record {rec.id!r} of {dataset}")
        out.append(table.array[table.row[rec.id]])
    return torch.from_numpy(np.stack(out).astype(np.float32))


def model_signals(cfg: Config, cap: TrainedCaptioner, pop: Population) -> ModelSignals:
    """Every signal of ``cap`` on the population records, then on the ``z`` records (cached, kind
    ``calib_signals``)."""
    import json
    from pathlib import Path

    from m4i_utils.core.cache import cached
    from m4i_utils.models.captioner import decode
    from m4i_utils.models.mfe import fb_features, get_mfe
    from m4i_utils.signals.likelihood import reference_logprob
    from m4i_utils.signals.text_similarity import caption_scores

    both = pop.queried
    mfe = get_mfe(cfg, pop.dataset)

    def build(out: Path) -> None:
        feats = record_features(cfg, pop.dataset, cap.family, both)
        hyps = decode(cap.model, feats, cap.vocab, cfg.max_caption_len, cfg.beam_width)
        refs = [r.captions for r in both.records]
        sim = caption_scores(hyps, refs, features=cfg.mb_features, smoothing=cfg.mb_smoothing)
        logprob = reference_logprob(cap, feats, both, cfg.max_caption_len)
        same = mfe.family == cap.family
        mfe_feats = feats if same else record_features(cfg, pop.dataset, mfe.family, both)
        fb = fb_features(mfe, mfe_feats, hyps, signed=cfg.fb_signed)
        np.savez(out / "signals.npz", similarity=sim, logprob=logprob, fb=fb)
        (out / "captions.json").write_text(json.dumps(hyps))

    params = {
        "records": pop.queried_key,
        "n_records": len(both),
        "mb_features": cfg.mb_features,
        "smoothing": cfg.mb_smoothing,
        "beam_width": cfg.beam_width,
        "max_len": cfg.max_caption_len,
        "fb_signed": cfg.fb_signed,
    }
    art = cached(
        cfg.cache_dir,
        "calib_signals",
        params,
        build,
        upstream=[cap.key, mfe.key],
        code_modules=["m4i_utils.signals.likelihood", "m4i_utils.signals.text_similarity"],
    )
    data = np.load(art.file("signals.npz"))
    captions = json.loads(art.file("captions.json").read_text())
    sig = ModelSignals(captions, data["similarity"], data["logprob"], data["fb"])
    if cfg.calib_views:
        sig.views = view_signals(cfg, cap, pop, sig)
    return sig


def view_features(cfg: Config, pop: Population, family: str) -> tuple[str, np.ndarray]:
    """Frozen-trunk features of ``calib_views`` augmented views (random flip + resized crop + colour jitter of
    strength ``calib_view_jitter``, :func:`m4i_utils.models.trunks.augment_batch`) of every population and
    ``z`` record: the cache key and the ``(n, views, D)`` array (cached, kind ``calib_view_features``; the
    same views for every model)."""
    from pathlib import Path

    from m4i_utils.core.cache import cached
    from m4i_utils.models.trunks import build_trunk, extract_features, trunk_key

    both = pop.queried

    def build(out: Path) -> None:
        trunk = build_trunk(cfg, family)
        feats = extract_features(
            trunk, both, cfg.trunk_input_size, cfg.calib_views, cfg.seed, cfg.calib_view_jitter
        )
        np.save(out / "features.npy", feats)

    params = {
        "records": pop.queried_key,
        "trunk": trunk_key(cfg, family),
        "input_size": cfg.trunk_input_size,
        "views": cfg.calib_views,
        "jitter": cfg.calib_view_jitter,
        "seed": cfg.seed,
    }
    art = cached(
        cfg.cache_dir, "calib_view_features", params, build, code_modules=["m4i_utils.models.trunks"]
    )
    return art.key, np.load(art.file("features.npy"))


def view_signals(cfg: Config, cap: TrainedCaptioner, pop: Population, base: ModelSignals) -> np.ndarray:
    """The richer black-box signal (label-only attacks, Choquette-Choo et al. 2021): the captions of
    ``calib_views`` augmented views of each query image; per record ``(n, len(mb_features) + 2)``: the mean
    over views of each similarity to the references, the mean ROUGE-L agreement of the views' captions with
    each other, and with the caption of the unaugmented image (cached, kind ``calib_view_signals``)."""
    import json
    from pathlib import Path

    from m4i_utils.core.cache import cached
    from m4i_utils.models.captioner import decode
    from m4i_utils.signals.text_similarity import caption_scores

    feats_key, feats = view_features(cfg, pop, cap.family)
    refs = [r.captions for r in pop.queried.records]

    def build(out: Path) -> None:
        views = [
            decode(
                cap.model, torch.from_numpy(feats[:, v].astype(np.float32)), cap.vocab, cfg.max_caption_len
            )
            for v in range(feats.shape[1])
        ]
        sim = np.mean(
            [caption_scores(h, refs, features=cfg.mb_features, smoothing=cfg.mb_smoothing) for h in views], 0
        )
        pairs = [(a, b) for a in range(len(views)) for b in range(a + 1, len(views))]
        agree = [
            caption_scores(views[a], [[c] for c in views[b]], features=("rougeL",))[:, 0] for a, b in pairs
        ]
        plain = [caption_scores(v, [[c] for c in base.captions], features=("rougeL",))[:, 0] for v in views]
        signal = np.column_stack([sim, np.mean(agree, 0) if agree else np.ones(len(refs)), np.mean(plain, 0)])
        np.save(out / "views.npy", signal)
        (out / "captions.json").write_text(json.dumps(views))

    params = {"views": cfg.calib_views, "mb_features": cfg.mb_features, "smoothing": cfg.mb_smoothing,
              "max_len": cfg.max_caption_len}  # fmt: skip
    art = cached(
        cfg.cache_dir,
        "calib_view_signals",
        params,
        build,
        upstream=[cap.key, feats_key],
        code_modules=["m4i_utils.signals.text_similarity"],
    )
    return np.load(art.file("views.npy"))


def bounded_logit(s: np.ndarray) -> np.ndarray:
    """``logit(clip(s, CLIP, 1 - CLIP))``: a similarity in [0, 1] on a near-Gaussian scale for LiRA."""
    p = np.clip(s, CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def signal_views(sig: ModelSignals) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per signal family: (LiRA input ``(n, d)``, RMIA probability-like input ``(n,)``).

    ``text``: the greedy caption's similarities; ``text_views``: plus the mean similarities of the augmented
    views' captions; ``text_views_agree``: plus the views' agreement with each other and with the greedy
    caption (what each addition buys is the difference between these families).
    """
    out = {"text": (bounded_logit(sig.similarity), np.maximum(sig.similarity.mean(1), PROB_FLOOR))}
    if sig.views is not None:
        d = sig.similarity.shape[1]
        for name, extra in (("text_views", sig.views[:, :d]), ("text_views_agree", sig.views)):
            both = np.column_stack([sig.similarity, extra])
            out[name] = (bounded_logit(both), np.maximum(both.mean(1), PROB_FLOOR))
    out["logprob"] = (sig.logprob[:, None], np.exp(sig.logprob))
    out["fb"] = (-sig.fb_distance[:, None], np.exp(-sig.fb_distance))
    return out


ACCESS = {
    "text": "black-box (generated text) + reference models",
    "report": "black-box (generated report) + reference models",
    "text_views": "black-box (generated text of augmented queries) + reference models",
    "text_views_agree": "black-box (generated text of augmented queries) + reference models",
    "logprob": "grey-box (token probabilities) + reference models",
    "report_logprob": "grey-box (token probabilities) + reference models",
    "fb": "black-box (generated text) + public MFE + reference models",
    "mel_dtw": "black-box (synthesised speech) + reference models",
    "mel_loss": "grey-box (teacher-forced mel loss) + reference models",
}


# ------------------------------------------------------------------------------------------- attacks


def calibrated_attacks(cfg: Config, signals: list[str]) -> list[tuple[str, str, Any]]:
    """``(signal, attack name, factory(z_target, z_refs))`` for LiRA and RMIA on each signal family."""
    out = []
    for signal in signals:
        access = ACCESS[signal]
        for online in (False, True):
            mode = "online" if online else "offline"
            for gv in (False, True):
                name = f"lira_{mode}{'_global_var' if gv else ''}_{signal}"
                out.append((signal, name, _lira_factory(cfg, online, gv, name, access)))
            name = f"rmia_{mode}_{signal}"
            out.append((signal, name, _rmia_factory(cfg, online, name, access)))
    return out


def _lira_factory(cfg: Config, online: bool, gv: bool, name: str, access: str):
    return lambda _zt, _zr: LiRA(online, gv, cfg.calib_min_std, name, access)


def _rmia_factory(cfg: Config, online: bool, name: str, access: str):
    return lambda zt, zr: RMIA(zt, zr, online, cfg.calib_rmia_a, 1.0, name, access)


@dataclass
class CalibratedRun:
    """Everything notebook 10 reports: the population, its models' signals, results and rows."""

    population: Population
    models: list[TrainedCaptioner]
    signals: list[ModelSignals]
    results: list[AttackResult]
    rows: list[dict]
    ablation: list[dict]
    over_targets: list[dict]  # :func:`over_targets`: every attack with each model in turn as the target


def run_calibrated(cfg: Config, experiment: str, family: str | None = None) -> CalibratedRun:
    """Train the population models (executor), measure their signals and evaluate every attack on the
    target (model 0): the paper's MB SVM / FB MLP / thresholds with reference 1 as shadow, the blind
    baseline, LiRA and RMIA with every reference; then the reference-count ablation (:func:`ablation`) and
    every model in turn as the target (:func:`over_targets`)."""
    from m4i_utils.attacks.baselines import blind_baseline
    from m4i_utils.core.metrics import compute_metrics
    from m4i_utils.core.runstore import result_row

    family = family or cfg.families[0]
    pop = build_population(cfg, None)
    models = train_population(cfg, pop, family)
    signals = [model_signals(cfg, m, pop) for m in models]
    ids = np.array([f"{pop.dataset}/{r.id}" for r in pop.corpus.records])
    meta = calibrated_meta(cfg, experiment, models[0].label, pop.dataset, family)
    results, rows = [], []
    for res, row in paper_results(cfg, pop, signals, ids, meta, target=0, shadow=1):
        res.meta.update(shadow=models[1].label)
        row.update(shadow=models[1].label)
        results.append(res)
        rows.append(row)
    members, nonmembers = pop.members(0), pop.corpus.subset(np.flatnonzero(~pop.masks[0]))
    blind = blind_baseline(members, nonmembers, cfg.seed, {**meta, "shadow": "none (data only)"})
    blind.ids = np.r_[ids[pop.masks[0]], ids[~pop.masks[0]]]
    row = result_row(blind, compute_metrics(blind, cfg.n_bootstrap, cfg.seed))
    results.append(blind)
    rows.append(tag_result(blind, row, signal="data", n_references=0)[1])
    for res, row in calibrated_results(cfg, pop, signals, list(range(1, pop.n_models)), ids, meta):
        results.append(res)
        rows.append(row)
    table = ablation(cfg, pop, signals, ids, meta)
    spread = over_targets(cfg, pop, signals, ids, meta)
    return CalibratedRun(pop, models, signals, results, rows, table, spread)


def calibrated_meta(cfg: Config, experiment: str, target: str, dataset: str, architecture: str) -> dict:
    """The metadata of every result of a calibrated-attack experiment: the unrestricted scenario (the
    attacker trains references of the target's architecture) on an i.i.d. population."""
    return {
        "experiment": experiment,
        "scenario": "unrestricted",
        "setting": "iid",
        "target": target,
        "dataset": dataset,
        "architecture": architecture,
        "profile": cfg.profile,
        "seed": cfg.seed,
    }


def tag_result(res: AttackResult, row: dict, **fields: Any) -> tuple[AttackResult, dict]:
    """Add ``fields`` (e.g. the signal and the number of references) to a result's meta and its row."""
    res.meta.update(fields)
    row.update(fields)
    return res, row


def shadow_attack(
    cfg: Config,
    attack: str,
    name: str,
    signal: str,
    target_x: np.ndarray,
    shadow_x: np.ndarray,
    masks: np.ndarray,
    ids: np.ndarray,
    meta: dict,
    shadow_label: str,
    target: int = 0,
    shadow: int = 1,
) -> tuple[AttackResult, dict]:
    """The paper's one-shadow attack (registry name ``attack``, reported as ``name``) on population model
    ``target``, learnt on population model ``shadow`` (its half known to the attacker), for any model kind's
    population signals ``target_x`` / ``shadow_x``; tagged with ``signal`` and one reference."""
    y_target, y_shadow = masks[target].astype(np.int64), masks[shadow].astype(np.int64)
    res, row = evaluate(cfg, attack, Signals(shadow_x, y_shadow), Signals(target_x, y_target, ids),
                        {**meta, "shadow": shadow_label, "attack": name})  # fmt: skip
    return tag_result(res, row, signal=signal, n_references=1)


def paper_results(
    cfg: Config,
    pop: Population,
    signals: list[ModelSignals],
    ids: np.ndarray,
    meta: dict,
    target: int,
    shadow: int,
) -> list[tuple[AttackResult, dict]]:
    """The paper's MB SVM, FB MLP and single-metric thresholds on population model ``target``, learnt on
    population model ``shadow`` (its half known to the attacker) as the one shadow model."""
    n = len(pop.corpus)
    t, s = signals[target], signals[shadow]
    paper = [("mb_svm", "text", t.similarity[:n], s.similarity[:n]), ("fb_mlp", "fb", t.fb[:n], s.fb[:n])]
    for k, feat in enumerate(cfg.mb_features):
        paper.append((f"threshold_{feat}", "text", t.similarity[:n, k], s.similarity[:n, k]))
    return [
        shadow_attack(
            cfg,
            name.split("_")[0] if name.startswith("threshold") else name,
            name,
            signal,
            tx,
            sx,
            pop.masks,
            ids,
            meta,
            f"pop{shadow}",
            target,
            shadow,
        )  # fmt: skip
        for name, signal, tx, sx in paper
    ]


def calibrated_results(
    cfg: Config,
    pop: Population,
    signals: list[ModelSignals],
    refs: list[int],
    ids: np.ndarray,
    meta: dict,
    target: int = 0,
) -> list[tuple[AttackResult, dict]]:
    """LiRA and RMIA on population model ``target`` with the reference models ``refs``, on every signal
    family of :func:`signal_views`."""
    views = [signal_views(s) for s in signals]
    return calibrate(cfg, views, pop.masks, refs, ids, meta, target)


def calibrate(
    cfg: Config,
    views: list[dict[str, tuple[np.ndarray, np.ndarray]]],
    masks: np.ndarray,
    refs: list[int],
    ids: np.ndarray,
    meta: dict,
    target: int = 0,
) -> list[tuple[AttackResult, dict]]:
    """LiRA and RMIA on model ``target`` with the reference models ``refs``, for any model kind.

    Args:
        views: per model, per signal family: (LiRA input ``(n + n_z, d)``, RMIA probability-like input
            ``(n + n_z,)``), rows the ``n`` population records then the ``n_z`` records no model trained on.
        masks: ``(n_models, n)`` membership of the population records (:func:`population_masks`).
        refs: the reference models; ``target`` must not be one of them.
        ids: the ``n`` population records' ids (the per-sample scores' keys).
    """
    if target in refs:
        raise ValueError(f"model {target} is the target and cannot also be one of the references {refs}")
    n = masks.shape[1]
    y_target = masks[target].astype(np.int64)
    in_mask = masks[refs].T.astype(np.int64)  # records x refs
    out = []
    for signal, name, factory in calibrated_attacks(cfg, list(views[target])):
        lira = name.startswith("lira")
        part = 0 if lira else 1
        ref_x = np.stack([views[r][signal][part][:n] for r in refs], axis=1)
        target_x = views[target][signal][part][:n]
        z_target = views[target][signal][1][n:]
        z_refs = np.stack([views[r][signal][1][n:] for r in refs], axis=1)
        attack = factory(z_target, z_refs)
        res, row = evaluate(cfg, attack, Signals(ref_x, in_mask), Signals(target_x, y_target, ids),
                            {**meta, "attack": name, "shadow": f"{len(refs)} reference models"})  # fmt: skip
        out.append(tag_result(res, row, signal=signal, n_references=len(refs)))
    return out


SPREAD_METRICS = ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "accuracy")


def over_targets(
    cfg: Config, pop: Population, signals: list[ModelSignals], ids: np.ndarray, meta: dict
) -> list[dict]:
    """Every attack with each population model in turn as the target (LiRA's evaluation, Carlini et al. 2022,
    section VI-A): the paper's attacks with the next model as their shadow, the calibrated ones with every
    other model as a reference. Each model has its own training seed and its own random half, so the spread
    over targets is the spread over training seeds and member sets. Point estimates (bootstrap off); the row
    of target 0 repeats the main table's point estimates."""
    from dataclasses import replace

    quick = replace(cfg, n_bootstrap=0)
    table = []
    for target in range(pop.n_models):
        shadow = (target + 1) % pop.n_models
        refs = [m for m in range(pop.n_models) if m != target]
        pairs = paper_results(quick, pop, signals, ids, meta, target, shadow)
        pairs += calibrated_results(quick, pop, signals, refs, ids, meta, target)
        table += [
            {"target_model": target, "attack": res.meta["attack"], "signal": row["signal"]}
            | {m: row[m] for m in SPREAD_METRICS}
            for res, row in pairs
        ]
    return table


def ablation(
    cfg: Config, pop: Population, signals: list[ModelSignals], ids: np.ndarray, meta: dict
) -> list[dict]:
    """TPR at 1% / 0.1% FPR and AUC of each calibrated attack with the first k references, for every k of
    ``calib_ablation`` (bootstrap off: point estimates)."""
    from dataclasses import replace

    quick = replace(cfg, n_bootstrap=0)
    table = []
    for k in cfg.calib_ablation:
        for res, row in calibrated_results(quick, pop, signals, list(range(1, k + 1)), ids, meta):
            table.append(
                {"n_references": k, "attack": res.meta["attack"], "signal": row["signal"]}
                | {m: row[m] for m in SPREAD_METRICS}
            )
    return table
