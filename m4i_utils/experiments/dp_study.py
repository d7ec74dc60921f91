"""The DP-SGD study of notebook 09 (M4I section 5, beyond its single DP row): DP captioners with real utility,
a non-private control, an epsilon sweep, attacks on every model and a one-run DP audit with canaries.

Data (its own seeded i.i.d. split of one world; the grid's roles play no part):

* **Tuning images** (:func:`tuning_records`): ``def_dp_members`` public images, on which
  ``scripts/tune_dp.py`` chose the DP hyperparameters, whose captions give the DP models' vocabulary and
  whose trunk features give the fixed feature standardisation of
  :meth:`~m4i_utils.models.dp_captioner.DPEncoderDecoder.set_feature_stats`.
  Nothing that depends on the members is chosen outside the accounting.
* **The study's pool**: every other image of the world except the public ``val`` images, permuted by
  ``rng_for(seed, "dp_study", dataset)`` into members (``def_dp_members``), non-members
  (``def_dp_nonmembers``), test images for utility (``def_dp_test``), the shadow side's members and
  non-members (same sizes) and ``def_dp_canaries`` canaries.
* **Canaries** (Steinke, Nasr and Jagielski 2023): each canary image carries the captions of another canary
  image (mislabelled, so that a model that trains on it must memorise it) and enters the target's training
  set by an independent fair coin drawn before training. The privacy unit is the image, so a canary is one
  DP sample like any member.

Models (cached, independent executor jobs): per target epsilon of ``def_dp_epsilons``, a DP captioner
(:mod:`m4i_utils.models.dp_captioner`, DP-SGD with Opacus) on members + included canaries, and a
same-recipe shadow on the shadow members; the **non-private control** (the same architecture, sampling,
clipping and steps, noise 0); and the **undefended twin** (the ordinary captioner recipe of
:func:`m4i_utils.models.captioner.get_captioner`, on the same images). The control's gap to each DP model is
the price of privacy; the twin's gap to the control is the price of the DP-compatible architecture.

Attacks (unrestricted scenario, i.i.d. members vs non-members, through the harness): the paper's MB SVM on
BLEU-1/2/3 + ROUGE-L of the generated caption (black-box) and a threshold on the reference captions'
log-likelihood (grey-box, the strongest signal of notebook 10), each fitted on the same-recipe shadow.
The audit scores the canaries by the grey-box signal (:func:`m4i_utils.attacks.dp_audit.one_run_audit_grid`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from m4i_utils.core.cache import cached
from m4i_utils.core.config import Config
from m4i_utils.core.runtime import cpu_threads, rng_for
from m4i_utils.data.bundles import load_bundle
from m4i_utils.data.records import Corpus, Record
from m4i_utils.data.text import Vocabulary
from m4i_utils.experiments.calibrated import record_features
from m4i_utils.models.captioner import CAPTIONER_FIELDS, TrainedCaptioner, decode

DP_STUDY_FIELDS = (
    *("def_dp_delta", "def_dp_max_grad_norm", "def_dp_batch_size", "def_dp_norm_groups", "def_dp_passes"),
    *("def_dp_members", "def_dp_nonmembers", "def_dp_test", "def_dp_canaries", "def_dp_embed_size"),
    *("def_dp_hidden_size", "def_dp_optimizer", "def_dp_lr", "vocab_threshold", "max_caption_len", "epochs"),
    "def_dp_public_passes",
)
# the models of the study besides the DP ones: the control has no epsilon, the twin is the ordinary recipe,
# the public start has seen no member (epsilon 0: its attacks must be at chance)
CONTROL, TWIN, PUBLIC = "control", "twin", "public_init"


def tuning_records(cfg: Config, bundle) -> Corpus:
    """The public images the DP hyperparameters are tuned on (``scripts/tune_dp.py``) and whose captions give
    the DP vocabulary: the first ``def_dp_members`` images of the public split after ``val``. The study never
    draws from them."""
    pool = bundle.role("public_pretrain")
    if len(pool) < cfg.def_dp_members:
        raise ValueError(
            f"def_dp_members={cfg.def_dp_members}: the public split of {bundle.name} holds only {len(pool)} "
            "images beyond val for the DP tuning set; lower def_dp_members or raise n_pairs"
        )
    return pool.subset(range(cfg.def_dp_members), name=f"{bundle.name}:dp_tuning")


@dataclass(frozen=True)
class DPSplit:
    """The DP study's roles (see the module docstring); ``canary_in[i]``: canary ``i``'s coin."""

    dataset: str
    roles: dict[str, Corpus]
    canary_in: np.ndarray
    key: str

    def training_set(self, side: str) -> Corpus:
        """The target side's members plus the canaries whose coin came up; the shadow side's members."""
        if side == "shadow":
            return self.roles["shadow_members"]
        canaries = self.roles["canaries"]
        picked = tuple(r for r, c in zip(canaries.records, self.canary_in, strict=True) if c)
        return Corpus(f"{self.dataset}:dp_train", self.roles["members"].records + picked)


SPLIT_ROLES = ("members", "nonmembers", "test", "shadow_members", "shadow_nonmembers", "canaries")


def dp_split(cfg: Config, dataset: str) -> DPSplit:
    """The study's seeded split of ``dataset`` (module docstring).

    Raises:
        ValueError: the world is too small for the requested sizes (names the fields to lower).
    """
    bundle = load_bundle(cfg, dataset)
    held = {r.id for r in bundle.role("val").records} | {r.id for r in tuning_records(cfg, bundle).records}
    pool = np.array([i for i, r in enumerate(bundle.corpus.records) if r.id not in held])
    sizes = {
        "members": cfg.def_dp_members,
        "nonmembers": cfg.def_dp_nonmembers,
        "test": cfg.def_dp_test,
        "shadow_members": cfg.def_dp_members,
        "shadow_nonmembers": cfg.def_dp_nonmembers,
        "canaries": cfg.def_dp_canaries,
    }
    if sum(sizes.values()) > len(pool):
        raise ValueError(
            f"the DP study needs {sum(sizes.values())} images of {dataset} (2 x def_dp_members + 2 x "
            f"def_dp_nonmembers + def_dp_test + def_dp_canaries) beyond its {len(held)} val and tuning "
            f"images, but the world holds {len(pool)} more; lower those sizes or raise n_pairs"
        )
    perm = rng_for(cfg.seed, "dp_study", dataset).permutation(pool)
    roles, start = {}, 0
    for role in SPLIT_ROLES:
        roles[role] = bundle.corpus.subset(perm[start : start + sizes[role]], name=f"{dataset}:dp_{role}")
        start += sizes[role]
    canaries = roles["canaries"].records
    # mislabelled canaries: canary i carries the captions of canary i + 1 (its image is its own)
    shifted = tuple(
        Record(r.id, r.image, canaries[(i + 1) % len(canaries)].captions) for i, r in enumerate(canaries)
    )
    roles["canaries"] = Corpus(f"{dataset}:dp_canaries", shifted)
    coins = rng_for(cfg.seed, "dp_canary_coins", dataset).integers(0, 2, len(canaries)).astype(bool)
    text = json.dumps({r: roles[r].ids for r in SPLIT_ROLES} | {"coins": coins.tolist()})
    return DPSplit(dataset, roles, coins, hashlib.sha256(text.encode()).hexdigest()[:16])


def _label(epsilon: float | None) -> str:
    return CONTROL if epsilon is None else f"dp_eps{epsilon:g}"


def study_model(cfg: Config, dataset: str, family: str, model: str, side: str = "target") -> TrainedCaptioner:
    """Load or train (cached, kind ``dp_study_model``) one model of the study.

    Args:
        model: ``"dp_eps<e>"`` (a DP captioner at target epsilon ``e``), :data:`CONTROL` or :data:`TWIN`.
        side: ``"target"`` (members + included canaries) or ``"shadow"`` (the shadow members).
    """
    from m4i_utils.models.captioner import _fit_and_save, _load
    from m4i_utils.models.trunks import features_for

    if side not in ("target", "shadow"):
        raise ValueError(f"side must be 'target' or 'shadow', got {side!r}")
    valid = study_models(cfg)
    if model not in valid:
        raise ValueError(f"unknown DP study model {model!r}; valid for this config: {', '.join(valid)}")
    split = dp_split(cfg, dataset)
    bundle = load_bundle(cfg, dataset)
    train = split.training_set(side)
    params = {f: getattr(cfg, f) for f in DP_STUDY_FIELDS}
    if model == TWIN:
        params |= {f: getattr(cfg, f) for f in CAPTIONER_FIELDS}
    params |= {"dataset": dataset, "family": family, "model": model, "side": side, "split": split.key}
    seed = int(rng_for(cfg.seed, "dp_study_model", dataset, family, model, side).integers(2**31))
    table = features_for(cfg, dataset, family)

    def build(out: Path, checkpoints: Path) -> None:
        torch.set_num_threads(cpu_threads())
        feats = record_features(cfg, dataset, family, train)
        if model == TWIN:
            _fit_and_save(
                cfg, table, train, feats, bundle.role("val"), seed, f"dp twin {side}", out, checkpoints
            )
            return
        fitted = fit_study_model(
            cfg, dataset, family, train, model, seed, f"{model} {side}", checkpoints, feats=feats, side=side
        )
        torch.save({"state": fitted.model.state_dict(), "feat_dim": feats.shape[-1]}, out / "model.pt")
        fitted.vocab.save(out / "vocab.json")
        (out / "history.json").write_text(json.dumps(fitted.history))

    art = cached(
        cfg.cache_dir,
        "dp_study_model",
        params,
        build,
        upstream=[table.key, bundle.splits.key],
        code_modules=[
            "m4i_utils.models.captioner",
            "m4i_utils.models.dp_captioner",
            "m4i_utils.experiments.dp_study",
        ],  # fmt: skip
    )
    if model == TWIN:
        return replace(_load(art, dataset, family, side, table.key, seed), tag=TWIN)
    vocab = Vocabulary.load(art.file("vocab.json"))
    ckpt = torch.load(art.file("model.pt"), map_location="cpu", weights_only=True)
    net = _dp_net(cfg, ckpt["feat_dim"], len(vocab))
    net.load_state_dict(ckpt["state"])
    history = json.loads(art.file("history.json").read_text())
    return TrainedCaptioner(net.eval(), vocab, history, art.key, dataset, family, side, table.key,
                            float(art.manifest.get("build_seconds", 0.0)), seed, model)  # fmt: skip


def fit_study_model(
    cfg: Config,
    dataset: str,
    family: str,
    train: Corpus,
    model: str,
    seed: int,
    desc: str = "dp",
    checkpoint: Path | None = None,
    privatize=None,
    feats: torch.Tensor | None = None,
    side: str = "target",
) -> TrainedCaptioner:
    """Train one DP-captioner model of the study's recipe on ``train``, now and uncached (the cached
    :func:`study_model` builds with it; course assignment 4 trains with it and the student's ``privatize``).

    The model starts from the public start (or, without public passes, from fresh weights standardised by
    the public images' features) and is fine-tuned by :func:`~m4i_utils.models.dp_captioner.train_dp`.

    Args:
        model: ``"dp_eps<e>"`` (DP-SGD at target epsilon ``e``), :data:`CONTROL` (noise 0) or :data:`PUBLIC`
            (the start itself: no training on ``train``).
        privatize: :func:`~m4i_utils.models.dp_captioner.make_private` (the default) or a function with its
            signature.
        feats: the trunk features of ``train`` when the caller has them already.
        side: the role the returned model is labelled with (``"target"`` or ``"shadow"``).
    Returns:
        The trained :class:`~m4i_utils.models.dp_captioner.DPEncoderDecoder` with the study's vocabulary and
        its history (the accountant's epsilon, noise multiplier, steps); uncached, so its ``key`` is ``""``.
    """
    from m4i_utils.models.dp_captioner import caption_tensor, make_private, train_dp
    from m4i_utils.models.trunks import features_for

    if model not in (CONTROL, PUBLIC) and not model.startswith("dp_eps"):
        raise ValueError(f"model must be 'dp_eps<epsilon>', {CONTROL!r} or {PUBLIC!r}, got {model!r}")
    epsilon = None if model in (CONTROL, PUBLIC) else float(model.removeprefix("dp_eps"))
    bundle = load_bundle(cfg, dataset)
    if feats is None:
        feats = record_features(cfg, dataset, family, train)
    vocab = study_vocab(cfg, bundle)
    tokens, n_caps = caption_tensor(train, vocab, cfg.max_caption_len)
    hist: dict = {}
    if cfg.def_dp_public_passes > 0:  # every model of the study (both sides) starts from the same weights
        net, hist = public_start(cfg, dataset, family)
    else:
        torch.manual_seed(seed)
        public_feats = record_features(cfg, dataset, family, tuning_records(cfg, bundle))
        net = _dp_net(cfg, feats.shape[-1], len(vocab)).set_feature_stats(public_feats)  # public only
    if model == PUBLIC:
        hist |= {"epsilon": 0.0, "noise_multiplier": math.inf, "steps": 0}
    else:
        passes = cfg.def_dp_passes or cfg.epochs * int(n_caps.max())
        hist |= train_dp(net, feats, tokens, n_caps, cfg, epsilon, passes, seed, desc, checkpoint,
                         privatize=privatize or make_private)  # fmt: skip
    return TrainedCaptioner(net.eval(), vocab, hist, "", dataset, family, side,
                            features_for(cfg, dataset, family).key, 0.0, seed, model)  # fmt: skip


def study_vocab(cfg: Config, bundle) -> Vocabulary:
    """The study's vocabulary, built from the public tuning captions (outside the accounting)."""
    tuning = tuning_records(cfg, bundle)
    return Vocabulary.build((c for r in tuning.records for c in r.captions), cfg.vocab_threshold)


def public_start(cfg: Config, dataset: str, family: str) -> tuple[torch.nn.Module, dict]:
    """The public start every model of the study fine-tunes from (cached, kind ``dp_public_start``): the DP
    captioner standardised by the public images' feature statistics and trained for
    ``def_dp_public_passes`` non-private passes on the public tuning images. Returns a fresh copy of it and
    its training history."""
    from m4i_utils.models.dp_captioner import caption_tensor, pretrain_public
    from m4i_utils.models.trunks import features_for

    bundle = load_bundle(cfg, dataset)
    table = features_for(cfg, dataset, family)
    vocab = study_vocab(cfg, bundle)
    params = {f: getattr(cfg, f) for f in DP_STUDY_FIELDS} | {"dataset": dataset, "family": family}

    def build(out: Path) -> None:
        torch.set_num_threads(cpu_threads())
        tuning = tuning_records(cfg, bundle)
        public_feats = record_features(cfg, dataset, family, tuning)
        start_seed = int(rng_for(cfg.seed, "dp_public_init", dataset, family).integers(2**31))
        torch.manual_seed(start_seed)
        net = _dp_net(cfg, public_feats.shape[-1], len(vocab)).set_feature_stats(public_feats)
        tokens, n_caps = caption_tensor(tuning, vocab, cfg.max_caption_len)
        hist = pretrain_public(net, public_feats, tokens, n_caps, cfg, cfg.def_dp_public_passes, start_seed,
                               "public init")  # fmt: skip
        torch.save({"state": net.state_dict(), "feat_dim": public_feats.shape[-1]}, out / "model.pt")
        (out / "history.json").write_text(json.dumps(hist))

    art = cached(cfg.cache_dir, "dp_public_start", params, build, upstream=[table.key, bundle.splits.key],
                 code_modules=["m4i_utils.models.dp_captioner"])  # fmt: skip
    ckpt = torch.load(art.file("model.pt"), map_location="cpu", weights_only=True)
    net = _dp_net(cfg, ckpt["feat_dim"], len(vocab))
    net.load_state_dict(ckpt["state"])
    return net, json.loads(art.file("history.json").read_text())


def _dp_net(cfg: Config, feat_dim: int, vocab_size: int):
    """A DP captioner of the study's widths (fresh weights from torch's global RNG)."""
    from m4i_utils.models.dp_captioner import DPEncoderDecoder

    return DPEncoderDecoder(feat_dim, vocab_size, cfg.def_dp_embed_size, cfg.def_dp_hidden_size,
                            cfg.def_dp_norm_groups)  # fmt: skip


def study_models(cfg: Config) -> list[str]:
    """The study's models: the DP captioners of ``def_dp_epsilons``, the control, the twin and (with
    ``def_dp_public_passes``) the public start they all fine-tune from."""
    return (
        [_label(float(e)) for e in cfg.def_dp_epsilons]
        + [CONTROL, TWIN]
        + [PUBLIC] * bool(cfg.def_dp_public_passes)
    )


def _model_job(cfg: Config, dataset: str, family: str, model: str, side: str) -> str:
    """Executor job: train (or find) one model of the study in the cache; returns its key."""
    return study_model(cfg, dataset, family, model, side).key


# ------------------------------------------------------------------------------------------ signals


@dataclass
class ModelSignals:
    """One model's signals on a corpus: generated captions, MB similarity vector, grey-box log-likelihood."""

    captions: list[str]
    similarity: np.ndarray
    logprob: np.ndarray


def measure_signals(cfg: Config, cap: TrainedCaptioner, corpus: Corpus) -> ModelSignals:
    """:class:`ModelSignals` of ``cap`` on ``corpus``: the greedy caption of each image (the black-box
    query), its MB similarity vector to the image's references, and the references' log-likelihood."""
    from m4i_utils.signals.likelihood import reference_logprob
    from m4i_utils.signals.text_similarity import caption_scores

    feats = record_features(cfg, cap.dataset, cap.family, corpus)
    hyps = decode(cap.model, feats, cap.vocab, cfg.max_caption_len)
    sim = caption_scores(hyps, [r.captions for r in corpus.records], cfg.mb_features, n_jobs=1)
    with torch.no_grad():
        lp = reference_logprob(cap, feats, corpus, cfg.max_caption_len)
    return ModelSignals(hyps, sim, lp)


def model_signals(cfg: Config, cap: TrainedCaptioner, corpus: Corpus) -> ModelSignals:
    """:func:`measure_signals`, cached with the model (kind ``dp_study_signals``)."""
    ids = hashlib.sha256("\n".join(corpus.ids).encode()).hexdigest()[:16]
    caps_sha = hashlib.sha256("\n".join("|".join(r.captions) for r in corpus.records).encode()).hexdigest()

    def build(out: Path) -> None:
        sig = measure_signals(cfg, cap, corpus)
        np.savez(out / "signals.npz", similarity=sig.similarity, logprob=sig.logprob)
        (out / "captions.json").write_text(json.dumps(sig.captions))

    art = cached(cfg.cache_dir, "dp_study_signals",
                 {"ids": ids, "captions": caps_sha[:16], "mb_features": list(cfg.mb_features)}, build,
                 upstream=[cap.key], code_modules=["m4i_utils.signals.text_similarity",
                                                    "m4i_utils.signals.likelihood"])  # fmt: skip
    data = np.load(art.file("signals.npz"))
    return ModelSignals(
        json.loads(art.file("captions.json").read_text()), data["similarity"], data["logprob"]
    )


def _stack(signals: list[ModelSignals], field: str):
    """Members' then non-members' ``field`` signals (one column per metric) with their labels."""
    from m4i_utils.attacks.base import Signals

    m, n = (getattr(s, field) for s in signals)
    x = np.concatenate([m, n])
    return Signals(x if x.ndim > 1 else x[:, None], np.r_[np.ones(len(m)), np.zeros(len(n))].astype(np.int64))


# ------------------------------------------------------------------------------------------ the study


@dataclass
class StudyRun:
    """Everything notebook 09's DP section reports."""

    split: DPSplit
    models: dict[str, TrainedCaptioner]  # target side, by model name
    utility: list[dict]
    results: list
    rows: list[dict]
    audits: list[dict]


def run_dp_study(cfg: Config, dataset: str, family: str, experiment: str) -> StudyRun:
    """Train every model of the study (executor jobs), then measure utility, attack every model and audit
    the DP ones on the canaries."""
    from m4i_utils.attacks.base import Signals
    from m4i_utils.attacks.dp_audit import one_run_audit_grid
    from m4i_utils.attacks.metric_attack import ThresholdAttack
    from m4i_utils.core.executor import run_jobs
    from m4i_utils.experiments.harness import evaluate
    from m4i_utils.models.captioner import constant_baseline
    from m4i_utils.signals.text_similarity import utility_metrics

    split = dp_split(cfg, dataset)
    names = study_models(cfg)
    jobs = [(cfg, dataset, family, m, side) for m in names for side in ("target", "shadow")]
    if cfg.def_dp_public_passes > 0:
        public_start(cfg, dataset, family)  # once, here, before the jobs load it from the cache
    run_jobs(cfg, _model_job, jobs, desc="DP study models")
    test = split.roles["test"]
    refs = [r.captions for r in test.records]
    base = utility_metrics([constant_baseline(split.roles["members"])] * len(refs), refs)
    utility = [{"model": "constant caption", **base}]
    models, results, rows, audits = {}, [], [], []
    m_can = len(split.roles["canaries"])
    ks = tuple(sorted({(k, k) for k in (m_can // 20, m_can // 10, m_can // 4) if k > 0}))
    for name in names:
        target, shadow = (study_model(cfg, dataset, family, name, side) for side in ("target", "shadow"))
        models[name] = target
        hist = target.history
        util = utility_metrics(model_signals(cfg, target, test).captions, refs)
        epsilon = hist.get("epsilon", math.inf) if name != TWIN else math.inf
        utility.append({"model": name, **util, "accountant_epsilon": epsilon,
                        "noise_multiplier": hist.get("noise_multiplier", 0.0), "steps": hist.get("steps"),
                        "train_seconds": target.build_seconds})  # fmt: skip
        sig = {
            side: [model_signals(cfg, cap, split.roles[f"{prefix}{r}"]) for r in ("members", "nonmembers")]
            for side, cap, prefix in (("target", target, ""), ("shadow", shadow, "shadow_"))
        }
        meta = {"experiment": experiment, "scenario": "unrestricted", "setting": "iid", "dataset": dataset,
                "architecture": family, "profile": cfg.profile, "seed": cfg.seed, "defense": name,
                "target": f"{name}/target", "shadow": f"{name}/shadow"}  # fmt: skip
        ids = np.array([f"{dataset}/{i}" for r in ("members", "nonmembers") for i in split.roles[r].ids])
        grey_box = ThresholdAttack(access="grey-box (reference captions' log-likelihood)")
        for attack, kind, field in (
            ("mb_svm", "mb_svm", "similarity"),
            ("grey_box_loss", grey_box, "logprob"),
        ):
            shadow_x, target_x = (_stack(sig[side], field) for side in ("shadow", "target"))
            res, row = evaluate(cfg, kind, shadow_x, Signals(target_x.x, target_x.labels, ids),
                                {**meta, "attack": attack})  # fmt: skip
            row.update(defense=name, accountant_epsilon=epsilon, bleu1=util["bleu1"], rougeL=util["rougeL"])
            results.append(res)
            rows.append(row)
        if m_can and name != TWIN:
            score = model_signals(cfg, target, split.roles["canaries"]).logprob
            audit = one_run_audit_grid(split.canary_in.astype(int), score, cfg.def_dp_delta, ks)
            audits.append({"model": name, "accountant_epsilon": epsilon, **audit.as_dict()})
    return StudyRun(split, models, utility, results, rows, audits)
