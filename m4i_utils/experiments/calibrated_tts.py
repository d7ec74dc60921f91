"""Reference-model calibrated attacks on the text-to-speech model (notebook 10, other modalities).

The protocol of :mod:`m4i_utils.experiments.calibrated` (LiRA's evaluation, Carlini et al. 2022, section V)
applied to the FastSpeech2-style model of the M4I appendix E experiment (:mod:`m4i_utils.models.tts`), per
utterance:

* **Population**: the utterances of the TTS target roles (members and i.i.d. non-members of
  :func:`m4i_utils.data.speech_sets.load_tts_data`, one speaker), so that each model trains on as many
  utterances as notebook 08's target. Model 0, the target, **is notebook 08's target model** (its members, the
  ``target_members`` role, are an i.i.d. seeded half of the two roles, so the cached model is reused, not
  trained again); the ``calib_tts_models - 1`` references train on independent random halves
  (:func:`m4i_utils.data.splits.population_masks`). RMIA's ``z``: the held-out ``test`` utterances (no model
  trains on them).
* **Signals** per utterance: black-box, the DTW-aligned distance ``d`` of the mel the model synthesises from
  the text to the reference mel (:func:`m4i_utils.signals.speech.mb_scores`), entered as ``-log d`` (LiRA) and
  ``exp(-d)`` (RMIA); grey-box, the teacher-forced mel L1 ``l`` (:func:`m4i_utils.models.tts.utterance_loss`),
  entered as ``-log l`` and ``exp(-l)``.
* **Attacks** on the same target: the paper's MB threshold on the DTW distance with reference model 1 as its
  shadow, LiRA and RMIA (:func:`~m4i_utils.experiments.calibrated.calibrate`).

Per speaker aggregation is not reported: the embedded speech world and the real LJSpeech subset are each one
speaker, so every member and non-member shares it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m4i_utils.core.config import Config
from m4i_utils.core.metrics import AttackResult
from m4i_utils.data.speech_sets import SpeechSet, load_tts_data
from m4i_utils.data.splits import population_masks
from m4i_utils.experiments.calibrated import calibrate, calibrated_meta, shadow_attack, tag_result

POPULATION_ROLES = ("target_members", "target_nonmembers")


@dataclass(frozen=True)
class SpeechPopulation:
    """The utterances the target and the reference TTS models train on (random halves), and RMIA's ``z``.

    Attributes:
        utterances: the population (the roles of :data:`POPULATION_ROLES`, in that order).
        z: the ``test`` utterances, never trained on.
        masks: ``(n_models, n_utterances)`` membership; row 0 is the target's.
    """

    utterances: SpeechSet
    z: SpeechSet
    masks: np.ndarray

    @property
    def n_models(self) -> int:
        return self.masks.shape[0]

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.utterances.ids)

    def members(self, model: int) -> SpeechSet:
        return self.utterances.subset(np.flatnonzero(self.masks[model]))


def _concat(parts: list[SpeechSet]) -> SpeechSet:
    fields = ("ids", "speakers", "texts", "tokens", "mels", "durations", "pitch", "energy")
    return SpeechSet(*([x for p in parts for x in getattr(p, f)] for f in fields))


def build_tts_population(cfg: Config) -> SpeechPopulation:
    """The run's TTS population, seeded by ``cfg.seed``: row 0 of the masks is notebook 08's target
    (``target_members``), rows 1.. are ``calib_tts_models - 1`` independent random halves."""
    data = load_tts_data(cfg)
    utterances = _concat([data.role(r) for r in POPULATION_ROLES])
    if len(set(utterances.ids)) != len(utterances):
        raise ValueError("the TTS target roles share an utterance id; the population needs unique ids")
    masks = population_masks(len(utterances), cfg.calib_tts_models, cfg.seed, "tts")
    masks[0] = np.arange(len(utterances)) < len(data.role(POPULATION_ROLES[0]))
    return SpeechPopulation(utterances, data.role("test"), masks)


def _model_job(cfg: Config, model: int) -> str:
    """Executor job: train (or find) population model ``model`` in the cache; returns its key."""
    return tts_population_model(cfg, model).key


def tts_population_model(cfg: Config, model: int):
    """Population model ``model`` on its half (cached, :func:`m4i_utils.models.tts.get_tts_on`); model 0 is
    notebook 08's target (:func:`m4i_utils.models.tts.get_tts_model`)."""
    from m4i_utils.core.runtime import rng_for
    from m4i_utils.models.tts import get_tts_model, get_tts_on

    if model == 0:
        return get_tts_model(cfg, load_tts_data(cfg), "target")
    pop = build_tts_population(cfg)
    seed = int(rng_for(cfg.seed, "calib_tts", model).integers(2**31))
    return get_tts_on(cfg, load_tts_data(cfg), pop.members(model), f"pop{model}", seed)


@dataclass
class SpeechSignals:
    """One TTS model's signals on the population utterances, then the ``z`` utterances."""

    dtw: np.ndarray  # DTW-aligned mel distance of the synthesis to the reference (black-box)
    loss: np.ndarray  # teacher-forced mel L1 (grey-box)
    train_seconds: float


def tts_signals(cfg: Config, pop: SpeechPopulation) -> list[SpeechSignals]:
    """Train every population model (independent jobs on the executor) and measure its signals (cached,
    kind ``calib_tts_signals``)."""
    from m4i_utils.core.cache import cached
    from m4i_utils.core.executor import run_jobs
    from m4i_utils.models.tts import utterance_loss
    from m4i_utils.signals.speech import mb_scores

    run_jobs(cfg, _model_job, [(cfg, m) for m in range(pop.n_models)], "TTS population")
    both = _concat([pop.utterances, pop.z])
    queried = hashlib.sha256("\n".join(both.ids).encode()).hexdigest()[:16]

    def measure(tts):
        def build(path: Path) -> None:
            dtw = -mb_scores(tts, both)["dtw"]
            np.savez(path / "signals.npz", dtw=dtw, loss=utterance_loss(tts, both))

        return build

    out = []
    for m in range(pop.n_models):
        tts = tts_population_model(cfg, m)
        build = measure(tts)
        art = cached(cfg.cache_dir, "calib_tts_signals", {"queried": queried}, build, upstream=[tts.key],
                     code_modules=["m4i_utils.signals.speech", "m4i_utils.models.tts"])  # fmt: skip
        data = np.load(art.file("signals.npz"))
        out.append(SpeechSignals(data["dtw"], data["loss"], tts.build_seconds))
    return out


def tts_views(sig: SpeechSignals) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per signal family: (LiRA input, RMIA probability-like input); higher = more likely a member."""
    d, loss = np.maximum(sig.dtw, 1e-6), np.maximum(sig.loss, 1e-6)
    return {
        "mel_dtw": (-np.log(d)[:, None], np.exp(-d)),
        "mel_loss": (-np.log(loss)[:, None], np.exp(-loss)),
    }


@dataclass
class TTSCalibratedRun:
    """The TTS population, its models' signals, the results and their rows."""

    population: SpeechPopulation
    signals: list[SpeechSignals]
    results: list[AttackResult]
    rows: list[dict]


def run_calibrated_tts(cfg: Config, experiment: str) -> TTSCalibratedRun:
    """Every attack on the target TTS model (model 0), per utterance."""
    from m4i_utils.attacks.base import Signals
    from m4i_utils.experiments.harness import evaluate
    from m4i_utils.signals.speech import blind_features

    pop = build_tts_population(cfg)
    signals = tts_signals(cfg, pop)
    n, ids, masks = len(pop.utterances), pop.ids, pop.masks
    meta = calibrated_meta(cfg, experiment, "FastSpeech2/target", "tts", "FastSpeech2")
    res, row = shadow_attack(cfg, "threshold", "threshold_mel_dtw", "mel_dtw", -signals[0].dtw[:n],
                             -signals[1].dtw[:n], masks, ids, meta, "FastSpeech2/pop1")  # fmt: skip
    results, rows = [res], [row]
    y_target, y_shadow = masks[0].astype(np.int64), masks[1].astype(np.int64)
    blind = blind_features(pop.utterances)  # text and reference mel only: the model is never queried
    shadow = "FastSpeech2/pop1 (its membership only)"
    res, row = evaluate(cfg, "blind_logreg", Signals(blind, y_shadow), Signals(blind, y_target, ids),
                        {**meta, "shadow": shadow, "attack": "blind_baseline"})  # fmt: skip
    res, row = tag_result(res, row, signal="data", n_references=0)
    results.append(res)
    rows.append(row)
    views = [tts_views(s) for s in signals]
    for res, row in calibrate(cfg, views, masks, list(range(1, pop.n_models)), ids, meta):
        results.append(res)
        rows.append(row)
    return TTSCalibratedRun(pop, signals, results, rows)
