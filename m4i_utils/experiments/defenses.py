"""Defense recipes against M4I and the attack of defended captioners (paper section 5, notebook 09): L2
regularisation and data augmentation. DP-SGD is its own study: :mod:`m4i_utils.experiments.dp_study`.

- **L2** (weight decay) and **augmentation** (``train_augment``: one of ``augment_views`` cached augmented
  trunk-feature views per pair and step) are the ordinary captioner recipe with one field changed: they go
  through :func:`m4i_utils.models.captioner.get_captioner` (kind ``captioner``; the field enters its cache
  key), so the undefended recipe (``none``) is notebooks 02-03's grid itself.
- **The defense grid** (:func:`run_defense_grid`): under every recipe of the sweep, all six targets and six
  shadows of the grid (``datasets`` x ``families``) for every training seed of ``train_seeds``, attacked by
  the paper's MB SVM and FB MLP in the paper's three scenarios (i.i.d. setting) exactly as notebooks 04 and
  06 attack the undefended grid (:func:`m4i_utils.experiments.attack_grid.run_grid`). The attacker's shadows
  are trained with the defended recipe: the attacker knows the training recipe, defense included (the
  strongest attacker; one who does not know the defense would train undefended shadows).
- **The calibrated attacker** (:func:`run_defense_calibrated`): LiRA and RMIA (notebook 10's protocol) on a
  population of ``def_calib_models`` captioners of the first dataset and family, all trained with the
  defended recipe (the target and its reference models). For augmentation the population models draw
  their views from the cached augmented views of the split roles the population pools
  (:func:`augmented_captioner_on`, kind ``captioner_on_aug``).

A defended model is named ``<grid name>:<defense label>`` (e.g. ``CM:l2_wd0.001``) in the results' ``target``
and ``shadow`` columns, so the rows and per-sample scores of different defenses never collide.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from m4i_utils.core.config import Config
from m4i_utils.core.metrics import AttackResult
from m4i_utils.data.records import Corpus
from m4i_utils.models.captioner import TrainedCaptioner, get_captioner

# the paper's three threat scenarios (the grid's architecture-only cells are left out)
DEFENSE_SCENARIOS = ("unrestricted", "data_only", "constrained")


@dataclass(frozen=True)
class Defense:
    """One defended training recipe: ``none``, ``l2`` (strength = weight decay), ``augment`` (strength =
    augmented views per image)."""

    name: str
    strength: float = 0.0

    @property
    def label(self) -> str:
        if self.name == "none":
            return "none"
        if self.name == "l2":
            return f"l2_wd{self.strength:g}"
        return f"augment_{int(self.strength)}views"


def defense_sweep(cfg: Config) -> list[Defense]:
    """The profile's sweep: undefended, L2 at each ``def_weight_decays``, and augmentation (if
    ``def_augment``)."""
    out = [Defense("none")]
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
    if defense.name == "none":
        return cfg
    raise ValueError(f"unknown defense {defense.name!r}; valid: none, l2, augment")


# ------------------------------------------------------------------------------- defended captioners


def get_defended_captioner(
    cfg: Config, dataset: str, family: str, role: str, defense: Defense
) -> TrainedCaptioner:
    """Load or train the ``role`` captioner of ``dataset`` x ``family`` under ``defense`` (cached, kind
    ``captioner``): :func:`~m4i_utils.models.captioner.get_captioner` with the defended config."""
    return get_captioner(defended_config(cfg, defense), dataset, family, role)


def _named(res: AttackResult, row: dict, defense: Defense) -> None:
    """Name the defended target and shadow ``<grid name>:<label>`` and add the defense columns."""
    for field in ("target", "shadow"):
        name = f"{res.meta[field]}:{defense.label}"
        res.meta[field] = row[field] = name
    fields = {"defense": defense.label, "defense_kind": defense.name, "defense_strength": defense.strength}
    res.meta.update(fields)
    row.update(fields)


# ------------------------------------------------------------------------------------------- the grid


@dataclass
class DefenseGrid:
    """Notebook 09's defense grid: per-target utility, and every attack result with its row."""

    utility: pd.DataFrame  # one row per defended target (and seed): BLEU / ROUGE-L and the constant caption
    results: list[AttackResult]
    rows: list[dict]


def run_defense_grid(cfg: Config, sweep: list[Defense], experiment: str) -> DefenseGrid:
    """Train (executor, cached) every target and shadow of the grid under every defense of ``sweep``, for
    every training seed, then measure each target's utility on its ``target_test`` and attack it with the MB
    SVM and FB MLP in the three scenarios (i.i.d.), each shadow trained with the same defense."""
    from m4i_utils.experiments.attack_grid import fb_featurizer, mb_featurizer, run_grid
    from m4i_utils.models.captioner import train_recipes, utility_table

    configs = [defended_config(cfg, d) for d in sweep]
    trained = train_recipes(configs, ("target", "shadow"))
    utility, results, rows = [], [], []
    for defense, dcfg, caps in zip(sweep, configs, trained, strict=True):
        targets = [c for c in caps if c.role == "target"]
        util = utility_table(dcfg, targets).reset_index()
        util["target"] = [f"{c.name}:{defense.label}" for c in targets]  # the grid's name, as in the rows
        util["defense"], util["defense_kind"], util["defense_strength"] = (
            defense.label,
            defense.name,
            defense.strength,
        )
        utility.append(util)
        by_target = {(r.target, r.train_seed): r for r in util.itertuples()}
        for attack, featurize in (
            ("mb_svm", mb_featurizer(dcfg)),
            ("fb_mlp", fb_featurizer(dcfg, dcfg.fb_signed)),
        ):
            res_list, row_list = run_grid(dcfg, featurize, attack, experiment, attack, settings=("iid",),
                                          scenarios=DEFENSE_SCENARIOS)  # fmt: skip
            for res, row in zip(res_list, row_list, strict=True):
                _named(res, row, defense)
                u = by_target[row["target"], row["train_seed"]]
                row.update(bleu1=u.bleu1, rougeL=u.rougeL, baseline_bleu1=u.baseline_bleu1,
                           baseline_rougeL=u.baseline_rougeL)  # fmt: skip
            results += res_list
            rows += row_list
    return DefenseGrid(pd.concat(utility, ignore_index=True), results, rows)


def run_defense_calibrated(
    cfg: Config, defense: Defense, experiment: str
) -> tuple[list[AttackResult], list[dict], dict[str, float]]:
    """The calibrated attacker on ``defense``: notebook 10's population (first dataset, first family) with
    ``def_calib_models`` models (the target and its references) all trained with the defended recipe; the
    paper's MB SVM and FB MLP with reference 1 as shadow, LiRA and RMIA with every reference.

    Returns:
        The results, their rows (target named ``pop0:<label>``) and the target's utility on ``target_test``.

    The augmentation recipe's population models train on augmented views of their halves
    (:func:`augmented_captioner_on`).
    """
    from m4i_utils.experiments.calibrated import (
        build_population,
        calibrated_meta,
        calibrated_results,
        model_signals,
        paper_results,
        train_population,
    )
    from m4i_utils.models.captioner import utility_table

    dcfg = dataclasses.replace(defended_config(cfg, defense), calib_models=cfg.def_calib_models)
    family = dcfg.families[0]
    pop = build_population(dcfg)
    if dcfg.train_augment:
        models = _train_augmented_population(dcfg, pop.dataset, family, pop.n_models)
    else:
        models = train_population(dcfg, pop, family)
    signals = [model_signals(dcfg, m, pop) for m in models]
    ids = np.asarray([f"{pop.dataset}/{r.id}" for r in pop.corpus.records])
    meta = calibrated_meta(dcfg, experiment, models[0].label, pop.dataset, family)
    pairs = paper_results(dcfg, pop, signals, ids, meta, target=0, shadow=1)
    pairs = [p for p in pairs if p[1]["attack"] in ("mb_svm", "fb_mlp")]
    pairs += calibrated_results(dcfg, pop, signals, list(range(1, pop.n_models)), ids, meta)
    util = utility_table(dcfg, models[:1], train_sets=[pop.members(0)]).iloc[0]
    utility = {k: float(util[k]) for k in ("bleu1", "rougeL", "baseline_bleu1", "baseline_rougeL")}
    for res, row in pairs:
        _named(res, row, defense)
        row.update(utility)
    return [p[0] for p in pairs], [p[1] for p in pairs], utility


# ---------------------------------------------------------------- augmented population (calibrated attacker)


def augmented_member_features(
    cfg: Config, dataset: str, family: str, members: Corpus
) -> tuple[torch.Tensor, list]:
    """``(len(members), augment_views, D)`` augmented trunk features of ``members``, gathered from the cached
    augmented views of the population's split roles (:data:`m4i_utils.data.splits.POPULATION_ROLES`), and
    those tables' keys.

    Raises:
        ValueError: a member is outside those roles (no augmented views exist for it).
    """
    from m4i_utils.data.splits import POPULATION_ROLES
    from m4i_utils.models.trunks import augmented_features_for

    rows, keys = {}, []
    for role in POPULATION_ROLES:
        table = augmented_features_for(cfg, dataset, family, role)
        keys.append(table.key)
        rows.update({rid: table.array[k] for k, rid in enumerate(table.ids)})
    missing = [rid for rid in members.ids if rid not in rows]
    if missing:
        raise ValueError(
            f"{len(missing)} member records (e.g. {missing[0]!r}) are outside the population roles "
            f"{', '.join(POPULATION_ROLES)}: no augmented views exist for them"
        )
    return torch.from_numpy(np.stack([rows[rid] for rid in members.ids]).astype(np.float32)), keys


def augmented_captioner_on(
    cfg: Config, dataset: str, family: str, members: Corpus, tag: str, role: str = "reference"
) -> TrainedCaptioner:
    """:func:`m4i_utils.models.captioner.get_captioner_on` for the augmentation recipe (cached, kind
    ``captioner_on_aug``): the same recipe and seed, trained on one of ``augment_views`` cached augmented
    views per member, step and pair (:func:`augmented_member_features`)."""
    from m4i_utils.core.cache import cached
    from m4i_utils.core.runtime import rng_for
    from m4i_utils.data.bundles import load_bundle
    from m4i_utils.models.captioner import CAPTIONER_FIELDS, _fit_and_save, _load
    from m4i_utils.models.trunks import features_for

    if not cfg.train_augment:
        raise ValueError("augmented_captioner_on is the augmentation recipe: set train_augment=True")
    bundle = load_bundle(cfg, dataset)
    table = features_for(cfg, dataset, family)
    feats, aug_keys = augmented_member_features(cfg, dataset, family, members)
    ids_sha = hashlib.sha256("\n".join(members.ids).encode()).hexdigest()[:16]
    params = {k: getattr(cfg, k) for k in CAPTIONER_FIELDS}
    params.update(
        dataset=dataset, family=family, role=role, tag=tag, members=len(members), member_ids=ids_sha
    )

    def build(out, checkpoints) -> None:
        seed = int(rng_for(cfg.seed, "captioner_on", dataset, family, tag).integers(2**31))
        _fit_and_save(cfg, table, members, feats, bundle.role("val"), seed, f"{tag} {dataset} {family}", out,
                      checkpoints)  # fmt: skip

    upstream = [*aug_keys, table.key, bundle.splits.key]
    code = ["m4i_utils.models.captioner", "m4i_utils.models.trunks"]
    art = cached(cfg.cache_dir, "captioner_on_aug", params, build, upstream=upstream, code_modules=code)
    return _load(art, dataset, family, role, table.key, 0, tag)


def _augmented_population_job(cfg: Config, dataset: str, family: str, model: int) -> str:
    from m4i_utils.experiments.calibrated import build_population

    pop = build_population(cfg, dataset)
    return augmented_captioner_on(
        cfg, dataset, family, pop.members(model), f"pop{model}", _pop_role(model)
    ).key


def _train_augmented_population(
    cfg: Config, dataset: str, family: str, n_models: int
) -> list[TrainedCaptioner]:
    """Every population model of the augmentation recipe, as executor jobs (cached), in model order."""
    from m4i_utils.core.executor import run_jobs
    from m4i_utils.experiments.calibrated import build_population

    jobs = [(cfg, dataset, family, m) for m in range(n_models)]
    run_jobs(cfg, _augmented_population_job, jobs, "augmented population")
    pop = build_population(cfg, dataset)
    return [augmented_captioner_on(cfg, dataset, family, pop.members(m), f"pop{m}", _pop_role(m))
            for m in range(n_models)]  # fmt: skip


def _pop_role(model: int) -> str:
    return "target" if model == 0 else "reference"
