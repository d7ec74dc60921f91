"""Reference-model calibrated attacks on the medical report generator (notebook 10, other modalities).

The protocol of :mod:`m4i_utils.experiments.calibrated` (LiRA's evaluation, Carlini et al. 2022, section V)
applied to the R2GenCMN-style report generator of the M4I appendix G experiment
(:mod:`m4i_utils.experiments.report_generation`), by **patient**:

* **Population**: the studies of the patients of the medical target roles (members and non-members of
  :func:`~m4i_utils.experiments.report_generation.med_splits`; i.i.d. patients, all studies of a patient
  together), so that each model trains on as many patients as notebook 07's target.
  ``calib_med_models`` report generators train on the studies of independent random halves of the
  patients (:func:`m4i_utils.data.splits.population_masks` over patients): model 0 is the target, the
  others are reference models. RMIA's ``z``: the studies of the ``target_test`` patients (no model trains
  on them).
* **Signals** per study: black-box, the similarity (``mb_features``: BLEU-1/2/3, ROUGE-L) of the generated
  report (beam ``med_beam_width``) to the study's reference report, entered as
  :func:`~m4i_utils.experiments.calibrated.bounded_logit`; grey-box, the mean token log-probability of the
  reference report under teacher forcing (:func:`m4i_utils.signals.likelihood.report_logprob`).
* **Attacks** on the same target: the paper's MB SVM with reference model 1 as its shadow (the unrestricted
  scenario), the blind baseline, LiRA and RMIA (:func:`~m4i_utils.experiments.calibrated.calibrate`); each
  per study, and per patient as the mean score over the patient's studies
  (:func:`~m4i_utils.experiments.report_generation.patient_level`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from m4i_utils.core.config import Config
from m4i_utils.core.metrics import AttackResult
from m4i_utils.data.medical import MedCorpus, load_med_corpus
from m4i_utils.data.splits import population_masks
from m4i_utils.experiments.calibrated import (
    PROB_FLOOR,
    bounded_logit,
    calibrate,
    calibrated_meta,
    shadow_attack,
)
from m4i_utils.experiments.report_generation import MED_FIELDS, med_splits, patient_level

POPULATION_ROLES = ("target_members", "target_nonmembers")


@dataclass(frozen=True)
class MedPopulation:
    """The studies the target and the reference report generators train on, by patient halves.

    Attributes:
        corpus: the medical corpus.
        studies: population study indices into ``corpus`` (the roles of :data:`POPULATION_ROLES`, sorted).
        z: study indices of ``target_test`` (RMIA's population records, never trained on).
        patients: the population's patients (first-seen order).
        patient_masks: ``(n_models, n_patients)`` membership of each patient; row 0 is the target's.
        patient_of: patient number (into ``patients``) of each population study.
    """

    corpus: MedCorpus
    studies: np.ndarray
    z: np.ndarray
    patients: tuple[str, ...]
    patient_masks: np.ndarray
    patient_of: np.ndarray

    @property
    def n_models(self) -> int:
        return self.patient_masks.shape[0]

    @property
    def masks(self) -> np.ndarray:
        """``(n_models, n_studies)`` membership of each population study (its patient's)."""
        return self.patient_masks[:, self.patient_of]

    @property
    def ids(self) -> np.ndarray:
        return np.array([f"{self.corpus.name}/{self.corpus.ids[i]}" for i in self.studies])

    @property
    def study_patients(self) -> list[str]:
        return [self.patients[p] for p in self.patient_of]

    def members(self, model: int) -> np.ndarray:
        """Study indices (into the corpus) of model ``model``'s half."""
        return self.studies[self.masks[model]]


def build_med_population(cfg: Config) -> MedPopulation:
    """The run's medical population, seeded by ``cfg.seed``; ``calib_med_models`` halves of its patients."""
    corpus = load_med_corpus(cfg)
    splits = med_splits(cfg, corpus)
    studies = np.sort(np.concatenate([splits[r] for r in POPULATION_ROLES]))
    names = list(dict.fromkeys(corpus.patients[i] for i in studies))
    number = {p: k for k, p in enumerate(names)}
    patient_of = np.array([number[corpus.patients[i]] for i in studies], dtype=np.int64)
    masks = population_masks(len(names), cfg.calib_med_models, cfg.seed, f"{corpus.name}:patients")
    return MedPopulation(corpus, studies, splits["target_test"], tuple(names), masks, patient_of)


def _model_params(cfg: Config, pop: MedPopulation, model: int) -> dict:
    members = "\n".join(pop.corpus.ids[i] for i in pop.members(model))
    queried = "\n".join(pop.corpus.ids[i] for i in np.r_[pop.studies, pop.z])
    return {f: getattr(cfg, f) for f in MED_FIELDS} | {
        "corpus": pop.corpus.name,
        "tag": f"pop{model}",
        "members": hashlib.sha256(members.encode()).hexdigest()[:16],
        "queried": hashlib.sha256(queried.encode()).hexdigest()[:16],
        "mb_features": cfg.mb_features,
        "smoothing": cfg.mb_smoothing,
    }


def med_population_model(cfg: Config, model: int):
    """Train population model ``model`` (0: the target) on its half and measure its signals on every
    population and ``z`` study (cached, kind ``calib_med_model``: ``signals.npz`` with ``similarity`` and
    ``logprob``, ``reports.json``, ``run.json`` with the training seed, history and seconds). A module-level
    function of the config and the model number, so that it runs as an executor job.

    Returns:
        The :class:`~m4i_utils.core.cache.Artifact`.
    """
    import time

    from m4i_utils.core.cache import cached
    from m4i_utils.core.runtime import cpu_threads, rng_for
    from m4i_utils.experiments.report_generation import mb_features, train_report_generator
    from m4i_utils.models.r2gen import generate
    from m4i_utils.signals.likelihood import report_logprob

    pop = build_med_population(cfg)

    def build(out: Path, checkpoints: Path) -> None:
        torch.set_num_threads(cpu_threads())
        start = time.time()
        seed = int(rng_for(cfg.seed, "calib_med", model).integers(2**31))
        net, tok, hist = train_report_generator(cfg, pop.corpus, pop.members(model), seed, f"pop{model}",
                                                checkpoints)  # fmt: skip
        queried = np.r_[pop.studies, pop.z]
        images = torch.from_numpy(pop.corpus.images[queried])
        refs = [pop.corpus.reports[i] for i in queried]
        reports = generate(net, images, tok, cfg.med_beam_width)
        sim = mb_features(cfg, reports, refs)
        logprob = report_logprob(net, images, tok.batch(refs, cfg.med_max_len))
        np.savez(out / "signals.npz", similarity=sim, logprob=logprob)
        (out / "reports.json").write_text(json.dumps(reports))
        meta = {"train_seed": seed, "history": hist, "seconds": time.time() - start}
        (out / "run.json").write_text(json.dumps(meta))

    return cached(
        cfg.cache_dir,
        "calib_med_model",
        _model_params(cfg, pop, model),
        build,
        code_modules=[
            "m4i_utils.models.r2gen",
            "m4i_utils.data.medical",
            "m4i_utils.experiments.report_generation",
            "m4i_utils.signals.likelihood",
            "m4i_utils.signals.text_similarity",
        ],
    )


def _model_job(cfg: Config, model: int) -> str:
    return med_population_model(cfg, model).key


@dataclass
class MedModelSignals:
    """One report generator's signals on the population studies, then the ``z`` studies."""

    reports: list[str]
    similarity: np.ndarray
    logprob: np.ndarray
    train_seed: int
    seconds: float


def med_signals(cfg: Config, pop: MedPopulation) -> list[MedModelSignals]:
    """Train every population model (independent jobs on the executor) and load their signals."""
    from m4i_utils.core.executor import run_jobs

    run_jobs(cfg, _model_job, [(cfg, m) for m in range(pop.n_models)], "medical population")
    out = []
    for m in range(pop.n_models):
        art = med_population_model(cfg, m)
        data = np.load(art.file("signals.npz"))
        meta = json.loads(art.file("run.json").read_text())
        reports = json.loads(art.file("reports.json").read_text())
        out.append(MedModelSignals(reports, data["similarity"], data["logprob"], meta["train_seed"],
                                   meta["seconds"]))  # fmt: skip
    return out


def med_views(sig: MedModelSignals) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per signal family: (LiRA input, RMIA probability-like input), as
    :func:`m4i_utils.experiments.calibrated.signal_views` does for captioners."""
    sim = sig.similarity
    return {
        "report": (bounded_logit(sim), np.maximum(sim.mean(1), PROB_FLOOR)),
        "report_logprob": (sig.logprob[:, None], np.exp(sig.logprob)),
    }


@dataclass
class MedCalibratedRun:
    """The medical population, its models' signals, the study-level results and rows, and the patient-level
    rows (the same attacks, scores averaged per patient)."""

    population: MedPopulation
    signals: list[MedModelSignals]
    results: list[AttackResult]
    rows: list[dict]
    patient_rows: list[dict]


def run_calibrated_medical(cfg: Config, experiment: str) -> MedCalibratedRun:
    """Every attack on the target report generator (model 0), per study and per patient."""
    from m4i_utils.core.metrics import compute_metrics
    from m4i_utils.core.runstore import result_row

    pop = build_med_population(cfg)
    signals = med_signals(cfg, pop)
    n, ids, masks = len(pop.studies), pop.ids, pop.masks
    meta = calibrated_meta(cfg, experiment, "R2GenCMN/pop0", pop.corpus.name, "R2GenCMN")
    res, row = shadow_attack(cfg, "mb_svm", "mb_svm", "report", signals[0].similarity[:n],
                             signals[1].similarity[:n], masks, ids, meta, "R2GenCMN/pop1")  # fmt: skip
    results, rows = [res], [row]
    blind = _blind_baseline(cfg, pop, ids, {**meta, "shadow": "none (data only)"})
    results.append(blind)
    rows.append(result_row(blind, compute_metrics(blind, cfg.n_bootstrap, cfg.seed)))
    views = [med_views(s) for s in signals]
    for res, row in calibrate(cfg, views, masks, list(range(1, pop.n_models)), ids, meta):
        results.append(res)
        rows.append(row)
    for row in rows:
        row["level"] = "study"
    patients = pop.study_patients
    order = {i: k for k, i in enumerate(ids)}
    patient_rows = []
    for res in results:
        rank = np.array([order[i] for i in res.ids])  # the blind baseline lists members first
        s, y, _ = patient_level(res.scores, res.labels, [patients[k] for k in rank])
        per_patient = AttackResult(s, y, None, dict(res.meta))
        metrics = compute_metrics(per_patient, cfg.n_bootstrap, cfg.seed)
        patient_rows.append(result_row(per_patient, metrics) | {"level": "patient"})
    return MedCalibratedRun(pop, signals, results, rows, patient_rows)


def _blind_baseline(cfg: Config, pop: MedPopulation, ids: np.ndarray, meta: dict) -> AttackResult:
    """The model-free classifier of :func:`m4i_utils.experiments.report_generation.study_blind_baseline` on
    the population's studies, target members against non-members: at chance, the halves being i.i.d.
    patients."""
    from m4i_utils.experiments.report_generation import study_blind_baseline

    member = pop.masks[0]
    studies = pop.studies
    reports, study_ids = [pop.corpus.reports[i] for i in studies], [pop.corpus.ids[i] for i in studies]
    res = study_blind_baseline(
        cfg, pop.corpus.images[studies], reports, study_ids, list(pop.patient_of), member, meta
    )
    res.ids = np.r_[ids[member], ids[~member]]
    res.meta.update(signal="data", n_references=0)
    return res
