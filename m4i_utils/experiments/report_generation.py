"""Medical report generation experiment (M4I appendix G, notebook 07): the R2GenCMN-style target, its shadows
in the three scenarios, utility beside a constant report, the MB / FB attacks through the one harness, and the
patient-level view of the attack scores.

Scenarios (appendix G): **unrestricted** (shadow: R2GenCMN on medical shadow members), **data-only** (shadow:
the captioning CNN+LSTM architecture on the same members), **constrained** (a CNN+LSTM captioner and an MFE
trained on the general-domain ``synth_coco`` world). Splits are by patient (all studies of a patient share a
role), disjoint and seeded; non-members are i.i.d. with members. The model code is
:mod:`m4i_utils.models.r2gen`. Each of the three medical models is its own cached artifact (kind
``med_model``) and a :class:`~m4i_utils.models.base.Target` of kind ``report_generator``
(:func:`load_report_generator`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from m4i_utils.core.metrics import AttackResult
from m4i_utils.core.runtime import rng_for
from m4i_utils.data import bundles
from m4i_utils.data.medical import MedCorpus, ReportTokenizer, load_med_corpus, patient_splits, report_tokens
from m4i_utils.models.r2gen import (
    build_model,
    generate,
    lstm_generate,
    pooled_pixels,
    train_lstm_captioner,
    train_r2gen,
)
from m4i_utils.signals.text_similarity import paired_difference, utility_metrics

# ------------------------------------------------------------------------------------------- metrics


def clean_tokens(text: str) -> str:
    """R2Gen-cleaned tokens of a report without sentence ends, space-joined: what utility is computed on."""
    return " ".join(t for t in report_tokens(text) if t != ".")


def constant_report(train_reports: list[str]) -> str:
    """The most frequent (cleaned) training report; ties -> the lexicographically first."""
    counts = Counter(" ".join(report_tokens(r)) for r in train_reports)
    best = max(counts.values())
    return min(c for c, k in counts.items() if k == best)


def patient_level(scores: np.ndarray, labels: np.ndarray, patients: list[str], min_studies: int = 1):
    """Mean attack score per patient (patients are wholly member or non-member), for patients with at least
    ``min_studies`` studies. Returns ``(scores, labels, n_studies)`` per patient."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    keep = [ix for ix in groups.values() if len(ix) >= min_studies]
    s = np.array([scores[ix].mean() for ix in keep])
    y = np.array([labels[ix[0]] for ix in keep])
    if any(len(set(labels[ix].tolist())) > 1 for ix in keep):
        raise ValueError("a patient has both member and non-member studies; split by patient")
    return s, y, np.array([len(ix) for ix in keep])


# ------------------------------------------------------------------------------------------- pipeline

MED_FIELDS = (
    "seed",
    "med_source",
    "med_n_studies",
    "med_image_size",
    "med_n_target_members",
    "med_n_target_nonmembers",
    "med_n_target_test",
    "med_n_shadow_members",
    "med_n_shadow_nonmembers",
    "med_min_public",
    "med_vocab_threshold",
    "med_max_len",
    "med_d_model",
    "med_layers",
    "med_heads",
    "med_d_ff",
    "med_memory_size",
    "med_topk",
    "med_dropout",
    "med_epochs",
    "med_batch_size",
    "med_lr",
    "med_weight_decay",
    "med_beam_width",
    "med_lstm_epochs",
    "embed_size",
    "hidden_size",
    "batch_size",
    "lr",
    "optimizer",
)
TARGET_ROLES = ("target_members", "target_nonmembers", "target_test")
SHADOW_ROLES = ("shadow_members", "shadow_nonmembers")
# the experiment's three models: name -> (architecture, training role, roles whose reports are stored)
MED_MODELS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "target": ("R2GenCMN", "target_members", TARGET_ROLES),
    "shadow_r2gen": ("R2GenCMN", "shadow_members", SHADOW_ROLES),
    "shadow_lstm": ("CNN+LSTM", "shadow_members", SHADOW_ROLES),
}


@dataclass
class MedRun:
    """The medical experiment's data, splits (study indices per role) and generated reports.

    ``generated[model][role]``: reports of ``model`` (``target``, ``shadow_r2gen``, ``shadow_lstm``) for the
    studies of ``role``; ``history[model]``: training curves (the R2GenCMN models); ``seconds``: build time
    per model; ``key``: a hash of the three models' cache keys.
    """

    corpus: MedCorpus
    splits: dict[str, np.ndarray]
    generated: dict[str, dict[str, list[str]]]
    history: dict[str, dict]
    seconds: dict[str, float]
    key: str

    def reports(self, role: str) -> list[str]:
        return [self.corpus.reports[i] for i in self.splits[role]]

    def patients(self, role: str) -> list[str]:
        return [self.corpus.patients[i] for i in self.splits[role]]

    def images(self, role: str) -> np.ndarray:
        return self.corpus.images[self.splits[role]]


def med_splits(cfg, corpus: MedCorpus) -> dict[str, np.ndarray]:
    """Disjoint target / shadow / test / public roles by patient (``med_n_*`` sizes are patients)."""
    sizes = {
        "target_members": cfg.med_n_target_members,
        "target_nonmembers": cfg.med_n_target_nonmembers,
        "target_test": cfg.med_n_target_test,
        "shadow_members": cfg.med_n_shadow_members,
        "shadow_nonmembers": cfg.med_n_shadow_nonmembers,
    }
    return patient_splits(corpus, sizes, cfg.med_min_public, cfg.seed)


def train_report_generator(
    cfg, corpus: MedCorpus, studies: np.ndarray, seed: int, desc: str, checkpoint=None
):
    """An R2GenCMN trained on the studies ``studies`` (indices into ``corpus``), its tokenizer built from
    their reports: ``(model, tokenizer, history)``."""
    reports = [corpus.reports[i] for i in studies]
    tok = ReportTokenizer.build(reports, cfg.med_vocab_threshold)
    torch.manual_seed(seed)
    model = build_model(cfg, len(tok))
    hist = train_r2gen(
        model,
        torch.from_numpy(corpus.images[studies]),
        tok.batch(reports, cfg.med_max_len),
        cfg.med_epochs,
        cfg.med_batch_size,
        cfg.med_lr,
        cfg.med_weight_decay,
        seed,
        desc,
        checkpoint,
    )
    hist["vocab_size"] = len(tok)
    return model, tok, hist


def med_model_artifact(cfg, name: str, threads: int = 1):
    """Train one model of the experiment, save it and the reports it generates (cached, kind ``med_model``).

    ``name`` is one of :data:`MED_MODELS`: ``target`` (R2GenCMN on ``target_members``), ``shadow_r2gen``
    (R2GenCMN on ``shadow_members``) or ``shadow_lstm`` (the captioning CNN+LSTM on pooled pixels of
    ``shadow_members``). The artifact holds ``model.pt`` (R2GenCMN: its state_dict; CNN+LSTM:
    :func:`m4i_utils.models.captioner.save_checkpoint`), ``vocab.json`` (the token list of its
    :class:`~m4i_utils.data.medical.ReportTokenizer` or :class:`~m4i_utils.data.text.Vocabulary`) and
    ``run.json`` (architecture, training seed, the reports of its standard roles, history, build seconds).
    A module-level function so that it can run as an executor job (:func:`run_medical`).

    Returns:
        The :class:`~m4i_utils.core.cache.Artifact` (small: its folder, key and manifest).
    Raises:
        ValueError: unknown ``name``.
    """
    from m4i_utils.core.cache import cached
    from m4i_utils.models.captioner import save_checkpoint

    if name not in MED_MODELS:
        raise ValueError(f"unknown medical model {name!r}; valid: {', '.join(MED_MODELS)}")
    arch, members, roles = MED_MODELS[name]
    corpus = load_med_corpus(cfg)
    splits = med_splits(cfg, corpus)
    fingerprint = hashlib.sha256("\n".join(corpus.ids + corpus.reports).encode()).hexdigest()[:16]
    params = {f: getattr(cfg, f) for f in MED_FIELDS} | {"corpus": corpus.name, "model": name}

    def build(out: Path, checkpoints: Path) -> None:
        torch.set_num_threads(threads)
        start = time.time()
        if arch == "R2GenCMN":
            seed = int(rng_for(cfg.seed, "med", name).integers(2**31))
            model, tok, hist = train_report_generator(cfg, corpus, splits[members], seed, name, checkpoints)
            images = {r: torch.from_numpy(corpus.images[splits[r]]) for r in roles}
            gens = {r: generate(model, images[r], tok, cfg.med_beam_width) for r in roles}
            torch.save(model.state_dict(), out / "model.pt")
            (out / "vocab.json").write_text(json.dumps(list(tok.itos)))
        else:
            seed, hist = cfg.seed, {}
            feats = {r: pooled_pixels(corpus.images[splits[r]]) for r in roles}
            reports = [corpus.reports[i] for i in splits[members]]
            model, vocab = train_lstm_captioner(cfg, feats[members], reports, seed, checkpoints)
            gens = {r: lstm_generate(cfg, model, vocab, feats[r]) for r in roles}
            save_checkpoint(model, vocab, out / "model.pt")
            vocab.save(out / "vocab.json")
        meta = {"architecture": arch, "train_seed": seed, "generated": gens, "history": hist}
        (out / "run.json").write_text(json.dumps(meta | {"seconds": time.time() - start}))

    return cached(
        cfg.cache_dir,
        "med_model",
        params,
        build,
        upstream=[fingerprint],
        code_modules=["m4i_utils.models.r2gen", "m4i_utils.data.medical", "m4i_utils.models.captioner"],
    )


@dataclass
class TrainedReportGenerator:
    """A trained medical report generator of the M4I appendix G experiment (cached, kind ``med_model``): the
    R2GenCMN target, the R2GenCMN shadow of the unrestricted scenario or the CNN+LSTM captioner shadow of the
    data-only scenario. The :class:`~m4i_utils.models.base.Target` of kind ``report_generator``
    (:func:`load_report_generator`).

    Attributes:
        model_id: its name in :data:`MED_MODELS` / ``MedRun.generated`` (``target``, ``shadow_r2gen``,
            ``shadow_lstm``).
        architecture: ``R2GenCMN`` or ``CNN+LSTM`` (:attr:`name`).
        role: ``"target"`` or ``"shadow"``.
        train_seed: the seed of its weights and batch order.
        key: its cache key.
        dataset: the corpus it was trained on (``synth_cxr`` or ``iu_xray_rendered``).
        path: its artifact folder (``model.pt``, ``vocab.json``, ``run.json``).
        params: the artifact's parameters (the ``MED_FIELDS`` of the config it was trained with).
        generated: its reports for its standard roles (:data:`TARGET_ROLES` or :data:`SHADOW_ROLES`).
        history: training curves (empty for the CNN+LSTM); seconds: build time.
    """

    model_id: str
    architecture: str
    role: str
    train_seed: int
    key: str
    dataset: str
    path: Path
    params: dict
    generated: dict[str, list[str]]
    history: dict
    seconds: float

    kind = "report_generator"

    @property
    def name(self) -> str:
        """The architecture, as in the results tables (``R2GenCMN``, ``CNN+LSTM``)."""
        return self.architecture

    @classmethod
    def from_artifact(cls, art) -> TrainedReportGenerator:
        """The model of a :func:`med_model_artifact` artifact."""
        data = json.loads(art.file("run.json").read_text())
        model_id = art.manifest["params"]["model"]
        return cls(
            model_id=model_id,
            architecture=data["architecture"],
            role="target" if model_id == "target" else "shadow",
            train_seed=data["train_seed"],
            key=art.key,
            dataset=art.manifest["params"]["corpus"],
            path=art.path,
            params=art.manifest["params"],
            generated=data["generated"],
            history=data["history"],
            seconds=data["seconds"],
        )

    def _check_cfg(self, cfg) -> None:
        mine = json.loads(json.dumps({f: getattr(cfg, f) for f in MED_FIELDS}, default=str))
        diff = [f for f in MED_FIELDS if mine[f] != self.params.get(f)]
        if diff:
            raise ValueError(
                f"medical model {self.model_id} was trained with other settings than this config: "
                + ", ".join(f"{f}={self.params.get(f)!r} (config: {mine[f]!r})" for f in diff)
            )

    def load_model(self, cfg):
        """The trained network and its vocabulary from the artifact: ``(model, tokenizer or vocabulary)``,
        in eval mode (``cfg``: the config it was trained with, for the R2GenCMN sizes)."""
        from m4i_utils.data.text import Vocabulary
        from m4i_utils.models.captioner import load_checkpoint

        self._check_cfg(cfg)
        itos = tuple(json.loads((self.path / "vocab.json").read_text()))
        if self.architecture == "CNN+LSTM":
            vocab = Vocabulary(itos)
            return load_checkpoint(self.path / "model.pt", vocab), vocab
        tok = ReportTokenizer(itos)
        model = build_model(cfg, len(tok))
        model.load_state_dict(torch.load(self.path / "model.pt", map_location="cpu", weights_only=True))
        return model.eval(), tok

    def reports_for(self, cfg, images: np.ndarray) -> list[str]:
        """Reports the saved model generates for ``images`` (N x S x S uint8): R2GenCMN beam search with
        ``cfg.med_beam_width``, CNN+LSTM greedy on :func:`pooled_pixels`."""
        model, vocab = self.load_model(cfg)
        if self.architecture == "CNN+LSTM":
            return lstm_generate(cfg, model, vocab, pooled_pixels(images))
        return generate(model, torch.from_numpy(images), vocab, cfg.med_beam_width)

    def query(self, cfg, dataset: str, role: str) -> list[str]:
        """Its reports for the studies of ``role`` (a role of :func:`med_splits`), in split order: those
        stored when it was built for its standard roles, else generated by the saved model
        (:meth:`reports_for`). The Target protocol (:class:`m4i_utils.models.base.Target`).

        Raises:
            ValueError: ``dataset`` is not its corpus, ``role`` is not a role of the splits, or ``cfg``'s
                ``med_*`` settings differ from those it was trained with.
        """
        if dataset != self.dataset:
            raise ValueError(f"medical model {self.model_id} is trained on {self.dataset!r}, not {dataset!r}")
        self._check_cfg(cfg)
        if role in self.generated:
            return list(self.generated[role])
        corpus = load_med_corpus(cfg)
        splits = med_splits(cfg, corpus)
        if role not in splits:
            raise ValueError(f"unknown role {role!r} of {dataset}; valid: {', '.join(splits)}")
        return self.reports_for(cfg, corpus.images[splits[role]])


def load_report_generator(cfg, name: str = "target", threads: int = 1) -> TrainedReportGenerator:
    """Load or train one report generator of the medical experiment (M4I appendix G): ``name`` is
    ``target`` (R2GenCMN), ``shadow_r2gen`` (R2GenCMN shadow, unrestricted scenario) or ``shadow_lstm``
    (CNN+LSTM captioner shadow, data-only scenario). Cached (kind ``med_model``, :func:`med_model_artifact`);
    the loader of model kind ``report_generator`` (:mod:`m4i_utils.models.registry`).

    Raises:
        ValueError: unknown ``name``.
    """
    return TrainedReportGenerator.from_artifact(med_model_artifact(cfg, name, threads))


def run_medical(cfg, threads: int = 1) -> MedRun:
    """Train the target R2GenCMN, the unrestricted shadow (same architecture) and the data-only shadow
    (captioning CNN+LSTM architecture) and generate their reports (each cached, kind ``med_model``); the
    constrained scenario's shadow (:func:`constrained_shadow_artifact`) is built beside them.

    The four builds are independent jobs on the executor ``cfg.executor``
    (:func:`m4i_utils.core.executor.run_graph`); the reports are the same whichever runs them.

    Args:
        cfg: the profile (``med_*`` fields; ``embed_size`` / ``hidden_size`` / ``batch_size`` / ``lr`` /
            ``optimizer`` for the LSTM shadow).
        threads: torch CPU threads. 1 by default: on a CPU shared with other jobs, 2+ threads were measured
            ~10x SLOWER per batch (spin-waiting threads) than one.
    """
    from m4i_utils.core.executor import Task, run_graph

    corpus = load_med_corpus(cfg)
    splits = med_splits(cfg, corpus)
    tasks = {name: Task(med_model_artifact, (cfg, name, threads)) for name in MED_MODELS}
    n_shadow = len(splits["shadow_members"])
    tasks["constrained"] = Task(constrained_shadow_artifact, (cfg, n_shadow, threads))
    done = run_graph(cfg, tasks, "medical models")
    models = {name: TrainedReportGenerator.from_artifact(done[name]) for name in MED_MODELS}
    generated = {name: m.generated for name, m in models.items()}
    history = {name: m.history for name, m in models.items() if m.history}
    seconds = {name: m.seconds for name, m in models.items()}
    key = hashlib.sha256("\n".join(m.key for m in models.values()).encode()).hexdigest()[:16]
    return MedRun(corpus, splits, generated, history, seconds, key)


def utility_table(run: MedRun, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Test-split corpus BLEU-1..4 / mean ROUGE-L of the target beside the constant-report baseline (the most
    frequent training report), on R2Gen-cleaned tokens (:func:`clean_tokens`).

    The target's row also carries target minus baseline in BLEU-1 and ROUGE-L with 95% paired bootstrap
    intervals over the test studies (:func:`~m4i_utils.signals.text_similarity.paired_difference`).
    """
    refs = [(clean_tokens(r),) for r in run.reports("target_test")]
    hyps = [clean_tokens(h) for h in run.generated["target"]["target_test"]]
    base = [clean_tokens(constant_report(run.reports("target_members")))] * len(refs)
    target = utility_metrics(hyps, refs, str.split)
    target.update(paired_difference(hyps, base, refs, n_bootstrap, seed, str.split))
    rows = {"R2GenCMN target": target, "constant report": utility_metrics(base, refs, str.split)}
    return pd.DataFrame(rows).T


# ------------------------------------------------------------------------------------------- attacks


def _labels(n_mem: int, n_non: int) -> np.ndarray:
    return np.r_[np.ones(n_mem, dtype=np.int64), np.zeros(n_non, dtype=np.int64)]


def mb_features(cfg, hyps: list[str], refs: list) -> np.ndarray:
    """Per-sample ``cfg.mb_features`` (BLEU-1/2/3, ROUGE-L) of generated reports vs their reference(s)."""
    from m4i_utils.signals.text_similarity import caption_scores

    refs = [r if isinstance(r, list | tuple) else (r,) for r in refs]
    return caption_scores(hyps, refs, features=cfg.mb_features, smoothing=cfg.mb_smoothing, n_jobs=1)


def _gray(corpus) -> np.ndarray:
    """Grey-scale uint8 images (N x S x S) of a caption corpus (RGB arrays or files)."""
    return np.stack([np.asarray(r.load_image().convert("L")) for r in corpus.records])


def constrained_shadow_artifact(cfg, n_images: int, threads: int = 1):
    """Build (or load) the constrained scenario's shadow side (cached, kind ``med_constrained``).

    The shadow captioner (:func:`train_lstm_captioner`, notebook 02's architecture on the pooled-pixel
    descriptor) trains on the first ``n_images`` of ``synth_coco``'s ``shadow_members`` (all 5 captions each)
    and captions as many ``shadow_members`` / ``shadow_nonmembers`` images; the MFE trains on ``synth_coco``'s
    public pairs (at most 2,000 images). A module-level function so that it can run as an executor job
    (:func:`run_medical`).

    Returns:
        The :class:`~m4i_utils.core.cache.Artifact` (small: its folder, key and manifest).
    """
    from m4i_utils.core.cache import cached
    from m4i_utils.data.text import Vocabulary
    from m4i_utils.models import mfe

    bundle = bundles.load_bundle(cfg, "synth_coco")
    roles = {r: bundle.role(r) for r in SHADOW_ROLES}
    roles = {r: c.subset(range(min(n_images, len(c)))) for r, c in roles.items()}
    public = bundle.role("public")
    public = public.subset(range(min(2000, len(public))))
    params = {f: getattr(cfg, f) for f in MED_FIELDS} | {
        "n_images": n_images,
        "vocab_threshold": cfg.vocab_threshold,
        "mfe": [cfg.mfe_feature_size, cfg.mfe_hidden, cfg.mfe_epochs, cfg.mfe_lr, cfg.mfe_cov_weight],
    }

    def build(out: Path, checkpoints: Path) -> None:
        torch.set_num_threads(threads)
        feats = {r: pooled_pixels(_gray(c)) for r, c in roles.items()}
        sm = roles["shadow_members"]
        caps = [c for rec in sm.records for c in rec.captions]
        rows = np.repeat(np.arange(len(sm)), [len(rec.captions) for rec in sm.records])
        model, vocab = train_lstm_captioner(
            cfg, feats["shadow_members"][rows], caps, cfg.seed, checkpoints / "lstm"
        )
        hyps = {r: lstm_generate(cfg, model, vocab, feats[r]) for r in SHADOW_ROLES}
        pub_caps = [c for rec in public.records for c in rec.captions]
        owner = np.repeat(np.arange(len(public)), [len(rec.captions) for rec in public.records])
        mvocab = Vocabulary.build(pub_caps, cfg.vocab_threshold)
        mmodel, _ = mfe.train_mfe(
            torch.from_numpy(pooled_pixels(_gray(public))[owner]),
            mfe.bow_vectors(mvocab, pub_caps),
            **mfe.train_kwargs(cfg),
            seed=int(rng_for(cfg.seed, "med_mfe_coco").integers(2**31)),
            desc="synth_coco mfe",
            checkpoint=checkpoints / "mfe",
        )
        torch.save(mmodel.state_dict(), out / "mfe.pt")
        mvocab.save(out / "mfe_vocab.json")
        refs = {r: [list(rec.captions) for rec in c.records] for r, c in roles.items()}
        (out / "shadow.json").write_text(json.dumps({"hyps": hyps, "refs": refs}))
        np.save(out / "feats.npy", np.concatenate([feats[r] for r in SHADOW_ROLES]))

    return cached(cfg.cache_dir, "med_constrained", params, build, upstream=[bundle.splits.key])


def constrained_shadow(cfg, n_images: int, threads: int = 1) -> dict:
    """General-domain attacker (constrained scenario): CNN+LSTM captioner and MFE on ``synth_coco``
    (:func:`constrained_shadow_artifact`).

    Returns:
        ``{"mb": (features, labels), "fb_shadow": features, "mfe": (model, vocab)}`` for the shadow side.
    """
    from m4i_utils.data.text import Vocabulary
    from m4i_utils.models import mfe

    art = constrained_shadow_artifact(cfg, n_images, threads)
    data = json.loads(art.file("shadow.json").read_text())
    feats = np.load(art.file("feats.npy"))
    mvocab = Vocabulary.load(art.file("mfe_vocab.json"))
    mmodel = mfe.MFE(feats.shape[1], len(mvocab), cfg.mfe_feature_size, cfg.mfe_hidden)
    mmodel.load_state_dict(torch.load(art.file("mfe.pt"), map_location="cpu", weights_only=True))
    mmodel.eval()
    hyps = data["hyps"]["shadow_members"] + data["hyps"]["shadow_nonmembers"]
    refs = data["refs"]["shadow_members"] + data["refs"]["shadow_nonmembers"]
    labels = _labels(len(data["refs"]["shadow_members"]), len(data["refs"]["shadow_nonmembers"]))
    fb = _fb(mmodel, mvocab, feats, hyps, cfg.fb_signed)
    return {"mb": (mb_features(cfg, hyps, refs), labels), "fb_shadow": fb, "mfe": (mmodel, mvocab)}


def medical_mfe(cfg, run: MedRun, threads: int = 1):
    """The attacker's MFE on the medical PUBLIC split (eq. 2): pooled-pixel image input, BoW report input.

    Returns ``(model, vocabulary)``; :func:`m4i_utils.models.mfe.train_mfe` with the ``mfe_*`` settings.
    """
    from m4i_utils.data.text import Vocabulary
    from m4i_utils.models import mfe

    torch.set_num_threads(threads)
    public = run.reports("public")
    vocab = Vocabulary.build(public, cfg.med_vocab_threshold)
    model, _ = mfe.train_mfe(
        torch.from_numpy(pooled_pixels(run.images("public"))),
        mfe.bow_vectors(vocab, public),
        **(mfe.train_kwargs(cfg) | {"batch_size": min(cfg.mfe_batch_size, max(8, len(public) // 4))}),
        seed=int(rng_for(cfg.seed, "med_mfe").integers(2**31)),
        desc="medical mfe",
    )
    return model, vocab


def _fb(model, vocab, img: np.ndarray | torch.Tensor, texts: list[str], signed: bool) -> np.ndarray:
    from m4i_utils.models import mfe

    fi, ft = mfe.embed(model, torch.as_tensor(img), mfe.bow_vectors(vocab, texts))
    z = fi - ft
    return (z if signed else z.abs()).numpy()


def run_attacks(cfg, run: MedRun, experiment: str, threads: int = 1) -> list[AttackResult]:
    """MB (scores -> SVM) and FB (MFE features -> MLP 256-20) attacks on the target in three scenarios.

    unrestricted: shadow = R2GenCMN on medical shadow members; data-only: shadow = CNN+LSTM captioner on the
    same medical shadow members; constrained: :func:`constrained_shadow` (CNN+LSTM captioner and MFE trained
    on the general-domain ``synth_coco`` world; its MFE embeds the medical images and reports at attack time).
    Target queries: ``target_members`` (label 1) vs ``target_nonmembers`` (label 0).
    """
    from m4i_utils.attacks.base import Signals
    from m4i_utils.experiments.harness import evaluate

    torch.set_num_threads(threads)
    tm, tn = TARGET_ROLES[:2]
    t_hyps = run.generated["target"][tm] + run.generated["target"][tn]
    t_refs = run.reports(tm) + run.reports(tn)
    t_y = _labels(len(run.splits[tm]), len(run.splits[tn]))
    t_img = np.concatenate([run.images(tm), run.images(tn)])
    sm, sn = SHADOW_ROLES
    s_y = _labels(len(run.splits[sm]), len(run.splits[sn]))
    s_img = np.concatenate([run.images(sm), run.images(sn)])
    s_refs = run.reports(sm) + run.reports(sn)
    t_mb = mb_features(cfg, t_hyps, t_refs)
    model, vocab = medical_mfe(cfg, run, threads)
    t_fb = _fb(model, vocab, pooled_pixels(t_img), t_hyps, cfg.fb_signed)
    s_pix = pooled_pixels(s_img)
    shadows = {}
    for scen, name in (("unrestricted", "shadow_r2gen"), ("data_only", "shadow_lstm")):
        hyps = run.generated[name][sm] + run.generated[name][sn]
        shadows[scen] = (
            mb_features(cfg, hyps, s_refs),
            s_y,
            _fb(model, vocab, s_pix, hyps, cfg.fb_signed),
            t_fb,
        )
    con = constrained_shadow(cfg, len(run.splits[sm]), threads)
    t_fb_coco = _fb(*con["mfe"], pooled_pixels(t_img), t_hyps, cfg.fb_signed)
    shadows["constrained"] = (*con["mb"], con["fb_shadow"], t_fb_coco)
    t_ids = np.array([run.corpus.ids[i] for role in (tm, tn) for i in run.splits[role]])
    results = []
    arch = {"unrestricted": "R2GenCMN", "data_only": "CNN+LSTM", "constrained": "CNN+LSTM (synth_coco)"}
    for scen, (sx_mb, sy, sx_fb, tx_fb) in shadows.items():
        meta = {
            "experiment": experiment,
            "scenario": scen,
            "setting": "iid",
            "shadow": arch[scen],
            "target": "R2GenCMN",
            "dataset": run.corpus.name,
            "architecture": "R2GenCMN",
            "profile": cfg.profile,
            "seed": cfg.seed,
        }
        for name, attack, sx, tx in (("MB", "mb_svm", sx_mb, t_mb), ("FB", "fb_mlp", sx_fb, tx_fb)):
            res, _ = evaluate(cfg, attack, Signals(sx, sy), Signals(tx, t_y, t_ids), {**meta, "attack": name})
            results.append(res)
    return results


def study_blind_baseline(
    cfg,
    images: np.ndarray,
    reports: list[str],
    ids: list[str],
    patients: list[str],
    member: np.ndarray,
    meta: dict,
) -> AttackResult:
    """The model-free classifier of :func:`m4i_utils.attacks.baselines.blind_baseline` on studies (grey
    radiographs and their reports), members against non-members, its folds grouped by patient (a patient's
    studies never fall in different folds, so it cannot win by recognising a patient). At chance when the two
    sets are i.i.d. patients; the result lists the members first.

    Args:
        images: one grey radiograph per study (N x H x W); reports, ids, patients: one per study.
        member: per study, True for a member.
    """
    from m4i_utils.attacks.baselines import blind_baseline
    from m4i_utils.data.records import Corpus, Record

    member = np.asarray(member, bool)
    if not len(images) == len(reports) == len(ids) == len(patients) == len(member):
        raise ValueError(
            f"one image, report, id, patient and member flag per study, got {len(images)}, {len(reports)}, "
            f"{len(ids)}, {len(patients)} and {len(member)}"
        )
    rgb = np.repeat(np.asarray(images)[..., None], 3, axis=-1)  # grey radiographs as RGB
    corpus = Corpus(
        "studies",
        tuple(Record(id=i, image=x, captions=(r,)) for i, x, r in zip(ids, rgb, reports, strict=True)),
    )
    groups = np.r_[np.asarray(patients)[member], np.asarray(patients)[~member]]
    res = blind_baseline(corpus.subset(np.flatnonzero(member)), corpus.subset(np.flatnonzero(~member)),
                         cfg.seed, meta, groups=groups)  # fmt: skip
    res.ids = np.r_[np.asarray(ids)[member], np.asarray(ids)[~member]]
    return res


def blind_result(cfg, run: MedRun, experiment: str) -> AttackResult:
    """The blind baseline on the target's members against its non-members (:func:`study_blind_baseline`):
    what a classifier that never queries the model reaches on notebook 07's sets."""
    tm, tn = TARGET_ROLES[:2]
    member = np.r_[np.ones(len(run.splits[tm]), bool), np.zeros(len(run.splits[tn]), bool)]
    meta = {"experiment": experiment, "scenario": "blind", "setting": "iid", "shadow": "none (data only)",
            "target": "R2GenCMN", "dataset": run.corpus.name, "architecture": "R2GenCMN",
            "profile": cfg.profile, "seed": cfg.seed}  # fmt: skip
    return study_blind_baseline(
        cfg,
        np.concatenate([run.images(tm), run.images(tn)]),
        run.reports(tm) + run.reports(tn),
        [run.corpus.ids[i] for role in (tm, tn) for i in run.splits[role]],
        run.patients(tm) + run.patients(tn),
        member,
        meta,
    )


def patient_table(
    run: MedRun, results: list[AttackResult], n_bootstrap: int = 0, seed: int = 0
) -> pd.DataFrame:
    """Study-level vs patient-level AUC (mean score per patient) of each attack; ``multi`` = patients with
    two or more studies only."""
    from sklearn.metrics import roc_auc_score

    patients = run.patients("target_members") + run.patients("target_nonmembers")
    rows = []
    for res in results:
        row = {
            "attack": res.meta["attack"],
            "scenario": res.meta["scenario"],
            "study_auc": roc_auc_score(res.labels, res.scores),
        }
        for tag, k in (("patient", 1), ("multi_study_patient", 2)):
            s, y, _ = patient_level(res.scores, res.labels, patients, k)
            ok = len(set(y.tolist())) == 2
            row[f"{tag}_auc"] = roc_auc_score(y, s) if ok else float("nan")
            row[f"n_{tag}s"] = len(y)
        rows.append(row)
    return pd.DataFrame(rows)
