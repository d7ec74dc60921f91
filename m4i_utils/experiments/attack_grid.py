"""The shadow x target attack grid shared by the metric-based (04) and feature-based (06) notebooks.

Paper section 4.1: six captioners (3 datasets x 2 architectures) serve as targets and, trained on disjoint
shadow data, as shadows; each shadow attacks each target. The cell's **scenario** follows from what the
shadow shares with the target: same dataset and architecture = *unrestricted*, same dataset only =
*data-only*, neither = *constrained*. Cells that share the architecture but not the dataset are not one of
the paper's three scenarios; they are kept and labelled *architecture-only*.

Two **membership settings** (labelled everywhere):
- ``iid``: non-members are other pairs of the *same* dataset as the members (the main setting);
- ``shift``: non-members come from *another* dataset, as the authors' code did. An attack can then succeed
  by recognising the dataset rather than membership, so this setting is partly a distribution-shift test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from m4i_utils.attacks.base import Signals
from m4i_utils.core.config import Config
from m4i_utils.core.metrics import AttackResult
from m4i_utils.data.datasets import DATASET_LETTERS
from m4i_utils.experiments.harness import AttackSpec, evaluate

SCENARIOS = ("unrestricted", "data_only", "constrained", "architecture_only")
SETTINGS = ("iid", "shift")


@dataclass(frozen=True)
class ModelSpec:
    """One captioner of the grid: dataset x family, as target or shadow."""

    dataset: str
    family: str
    role: str  # "target" | "shadow"
    train_seed: int = 0

    @property
    def name(self) -> str:
        """Paper notation, e.g. ``CR`` (MSCOCO / ResNet), ``FV`` (Flickr8k / VGG)."""
        return DATASET_LETTERS.get(self.dataset, self.dataset[:1].upper()) + self.family[0].upper()


@dataclass(frozen=True)
class QueryPart:
    """Records queried for one attack: ``role`` of ``dataset``, all labelled ``label`` (1 = member)."""

    dataset: str
    role: str
    label: int


def grid_models(cfg: Config, role: str, train_seed: int = 0) -> list[ModelSpec]:
    """All dataset x family captioners of the profile, in the paper's order (C, F, I x R, V)."""
    return [ModelSpec(d, f, role, train_seed) for d in cfg.datasets for f in cfg.families]


def scenario_of(shadow: ModelSpec, target: ModelSpec) -> str:
    """The threat scenario of a (shadow, target) cell (paper section 2.2)."""
    same_data, same_arch = shadow.dataset == target.dataset, shadow.family == target.family
    if same_data and same_arch:
        return "unrestricted"
    if same_data:
        return "data_only"
    if not same_arch:
        return "constrained"
    return "architecture_only"


def other_dataset(cfg: Config, dataset: str) -> str | None:
    """The dataset that supplies non-members in the ``shift`` setting (the next one of ``cfg.datasets``)."""
    if len(cfg.datasets) < 2:
        return None
    i = cfg.datasets.index(dataset)
    return cfg.datasets[(i + 1) % len(cfg.datasets)]


def query_parts(cfg: Config, model: ModelSpec, setting: str) -> list[QueryPart]:
    """Member and non-member records used to query ``model`` in ``setting`` (appendix C.1 roles).

    A target is queried with its ``target_members`` and ``target_nonmembers``; a shadow with its
    ``shadow_members`` and ``shadow_nonmembers``. In the ``shift`` setting the non-members are the same role
    of :func:`other_dataset`.
    """
    prefix = "target" if model.role == "target" else "shadow"
    if setting == "iid":
        non_dataset = model.dataset
    elif setting == "shift":
        non_dataset = other_dataset(cfg, model.dataset)
        if non_dataset is None:
            raise ValueError("the shift setting needs at least two datasets in cfg.datasets")
    else:
        raise ValueError(f"unknown setting {setting!r}; choose from {SETTINGS}")
    return [
        QueryPart(model.dataset, f"{prefix}_members", 1),
        QueryPart(non_dataset, f"{prefix}_nonmembers", 0),
    ]


# featurize(model, part, attacker): features of `model`'s answers on `part`; `attacker` is the cell's shadow
# (it fixes what the attacker knows, e.g. which public data trained the FB attack's feature extractor).
Featurize = Callable[[ModelSpec, QueryPart, ModelSpec], np.ndarray]


def query_features(
    cfg: Config, model: ModelSpec, setting: str, featurize: Featurize, attacker: ModelSpec
) -> tuple[np.ndarray, ...]:
    """Stacked attack features and membership labels of ``model``'s queries in ``setting``."""
    feats, labels = [], []
    for part in query_parts(cfg, model, setting):
        x = featurize(model, part, attacker)
        feats.append(x)
        labels.append(np.full(len(x), part.label))
    return np.concatenate(feats), np.concatenate(labels)


def query_ids(cfg: Config, model: ModelSpec, setting: str) -> np.ndarray:
    """Ids ``<dataset>/<record id>`` of ``model``'s queries in ``setting`` (:func:`query_features` order)."""
    from m4i_utils.data.bundles import load_bundle  # memoised per process

    ids = []
    for part in query_parts(cfg, model, setting):
        ids += [f"{part.dataset}/{r.id}" for r in load_bundle(cfg, part.dataset).role(part.role).records]
    return np.asarray(ids)


def run_grid(
    cfg: Config,
    featurize: Featurize,
    attack: AttackSpec,
    experiment: str,
    attack_name: str,
    settings: tuple[str, ...] = SETTINGS,
    scenarios: tuple[str, ...] = SCENARIOS,
    train_seeds: tuple[int, ...] | None = None,
) -> tuple[list[AttackResult], list[dict]]:
    """Run ``attack`` for every shadow x target cell whose scenario is in ``scenarios``, in every setting.

    Args:
        featurize: attack features of a model's answers on one query part (cached by the caller).
        attack: a registered attack name (:mod:`m4i_utils.attacks.registry`), a factory or an attack,
            run through the one harness (:func:`m4i_utils.experiments.harness.evaluate`).
        experiment, attack_name: metadata of the results-table rows.
        train_seeds: training seeds of the captioners to attack (default ``cfg.train_seeds``); the shadow
            and the target of a cell share one.
    Returns:
        The attack results and their results-table rows (metrics with bootstrap CIs).
    """
    results, rows = [], []
    cells = [  # shadow and target of one cell share a training seed; splits and trunks are shared by all
        (setting, s, t)
        for seed in (cfg.train_seeds if train_seeds is None else train_seeds)
        for setting in settings
        for s in grid_models(cfg, "shadow", seed)
        for t in grid_models(cfg, "target", seed)
        if scenario_of(s, t) in scenarios
    ]
    for setting, shadow, target in tqdm(cells, desc=f"{attack_name} grid"):
        sx, sy = query_features(cfg, shadow, setting, featurize, shadow)
        tx, ty = query_features(cfg, target, setting, featurize, shadow)
        meta = {
            "experiment": experiment,
            "attack": attack_name,
            "scenario": scenario_of(shadow, target),
            "setting": setting,
            "shadow": shadow.name,
            "target": target.name,
            "dataset": target.dataset,
            "architecture": target.family,
            "profile": cfg.profile,
            "seed": cfg.seed,
            "train_seed": target.train_seed,
        }
        ids = query_ids(cfg, target, setting)
        result, row = evaluate(cfg, attack, Signals(sx, sy), Signals(tx, ty, ids), meta)
        results.append(result)
        rows.append(row)
    return results, rows


def generated_and_references(
    cfg: Config, model: ModelSpec, part: QueryPart, captioners: dict, load_missing: bool = True
) -> tuple:
    """The captions ``model`` generates for ``part``'s records, their references and the captioner's key.

    ``captioners`` maps ModelSpec -> TrainedCaptioner: given models (e.g. defended ones) are used as they
    are; a missing one is loaded with ``get_captioner`` and memoised, or is an error if ``load_missing`` is
    False (so that a defended experiment never silently queries an undefended model).
    """
    from m4i_utils.data.bundles import load_bundle
    from m4i_utils.models.registry import load_target

    if model not in captioners:
        if not load_missing:
            raise KeyError(f"no captioner given for {model}")
        spec = dict(dataset=model.dataset, family=model.family, role=model.role, train_seed=model.train_seed)
        captioners[model] = load_target("captioner", cfg, **spec)
    cap = captioners[model]
    hyps = cap.query(cfg, part.dataset, part.role)
    refs = [r.captions for r in load_bundle(cfg, part.dataset).role(part.role).records]
    return hyps, refs, cap.key


def mb_featurizer(
    cfg: Config, features: tuple[str, ...] | None = None, captioners: dict | None = None
) -> Featurize:
    """Per-sample BLEU/ROUGE score vectors of a model's captions on a query part (paper 3.1), cached.

    ``captioners`` (optional) fixes the models to query, e.g. defended ones; then no other model is loaded.
    """
    import json
    from pathlib import Path

    from m4i_utils.core.cache import cached
    from m4i_utils.signals.text_similarity import caption_scores

    features = tuple(features or cfg.mb_features)
    given = captioners is not None
    captioners = dict(captioners or {})

    def featurize(model: ModelSpec, part: QueryPart, attacker: ModelSpec) -> np.ndarray:
        hyps, refs, key = generated_and_references(cfg, model, part, captioners, load_missing=not given)

        def build(out: Path) -> None:
            scores = caption_scores(hyps, refs, features=features, smoothing=cfg.mb_smoothing)
            np.save(out / "scores.npy", scores)
            (out / "features.json").write_text(json.dumps(list(features)))

        params = {
            "dataset": part.dataset,
            "role": part.role,
            "features": features,
            "smoothing": cfg.mb_smoothing,
            "beam_width": cfg.beam_width,
            "max_len": cfg.max_caption_len,
        }
        art = cached(
            cfg.cache_dir,
            "mb_scores",
            params,
            build,
            upstream=[key],
            code_modules=["m4i_utils.signals.text_similarity"],
        )
        return np.load(art.file("scores.npy"))

    return featurize


def fb_featurizer(cfg: Config, signed: bool = True, captioners: dict | None = None) -> Featurize:
    """MFE features ``F_img(image) - F_txt(generated caption)`` of a model's answers (paper 3.2), cached.

    The MFE is the one trained on the public split of the attacker's (shadow's) dataset: in the constrained
    scenario the attacker does not know the target's distribution, so target queries are embedded with the
    MFE of the shadow's dataset too.
    """
    import json
    from pathlib import Path

    from m4i_utils.core.cache import cached
    from m4i_utils.data.bundles import load_bundle
    from m4i_utils.models.mfe import fb_features_for, get_mfe

    given = captioners is not None
    captioners = dict(captioners or {})

    def featurize(model: ModelSpec, part: QueryPart, attacker: ModelSpec) -> np.ndarray:
        hyps, _, key = generated_and_references(cfg, model, part, captioners, load_missing=not given)
        mfe = get_mfe(cfg, attacker.dataset)

        def build(out: Path) -> None:
            corpus = load_bundle(cfg, part.dataset).role(part.role)
            z = fb_features_for(cfg, mfe, part.dataset, None, corpus, hyps, signed=signed)
            np.save(out / "features.npy", z)
            (out / "meta.json").write_text(json.dumps({"mfe_dataset": attacker.dataset, "signed": signed}))

        params = {
            "dataset": part.dataset,
            "role": part.role,
            "signed": signed,
            "mfe_dataset": attacker.dataset,
        }
        art = cached(cfg.cache_dir, "fb_features", params, build, upstream=[key, mfe.key])
        return np.load(art.file("features.npy"))

    return featurize
