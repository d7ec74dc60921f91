"""Defense recipes against M4I and the attack of defended captioners (paper section 5, notebook 09): L2
regularisation and data augmentation. DP-SGD is its own study: :mod:`m4i_utils.experiments.dp_study`.

Every defended captioner is trained on the same member data as its undefended twin and attacked by MB and FB
in the unrestricted scenario (iid setting) with a shadow trained by the same recipe (the unrestricted attacker
knows the training recipe, defense included; a data-only / constrained attacker would train an undefended
shadow, or one of another architecture, and is not run here).

- **L2** (weight decay) and **augmentation** (``train_augment``: one of ``augment_views`` cached augmented
  trunk-feature views per pair and step) are the ordinary captioner recipe with one field changed: they go
  through :func:`m4i_utils.models.captioner.get_captioner` (kind ``captioner``; the field enters its cache
  key).

:func:`run_defense` trains (cached) and attacks one defense; notebook 09's table and plot are in
:mod:`m4i_utils.reporting.privacy_utility`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from m4i_utils.attacks.base import Signals
from m4i_utils.core.config import Config
from m4i_utils.core.metrics import AttackResult
from m4i_utils.experiments.attack_grid import (
    ModelSpec,
    fb_featurizer,
    mb_featurizer,
    query_features,
    query_ids,
)
from m4i_utils.experiments.harness import evaluate
from m4i_utils.models.captioner import TrainedCaptioner, get_captioner


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


# ------------------------------------------------------------------------------------------- attacks


def attack_defended(
    cfg: Config, target: TrainedCaptioner, shadow: TrainedCaptioner, defense: Defense, experiment: str
) -> tuple[list[AttackResult], list[dict]]:
    """MB (SVM) and FB (MLP) attacks on a defended target with its same-recipe shadow (unrestricted, iid).

    Returns the two results and their results-table rows (:data:`m4i_utils.core.runstore.RESULT_COLUMNS`
    plus the extra columns ``defense`` and ``defense_strength``).
    """
    t_spec = ModelSpec(target.dataset, target.family, "target")
    s_spec = ModelSpec(shadow.dataset, shadow.family, "shadow")
    caps = {t_spec: target, s_spec: shadow}

    results, rows = [], []
    for name, featurize, attack in (
        ("mb_svm", mb_featurizer(cfg, captioners=caps), "mb_svm"),
        ("fb_mlp", fb_featurizer(cfg, signed=True, captioners=caps), "fb_mlp"),
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
        ids = query_ids(cfg, t_spec, "iid")
        res, row = evaluate(cfg, attack, Signals(sx, sy), Signals(tx, ty, ids), meta)
        row.update(defense=defense.name, defense_strength=defense.strength)
        results.append(res)
        rows.append(row)
    return results, rows


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


def _defended_job(cfg: Config, dataset: str, family: str, role: str, defense: Defense) -> str:
    """Executor job: train (or find) one defended captioner in the cache; returns its key."""
    return get_defended_captioner(cfg, dataset, family, role, defense).key


def run_defenses(
    cfg: Config, dataset: str, family: str, sweep: list[Defense], experiment: str
) -> list[DefenseRun]:
    """:func:`run_defense` for every defense of ``sweep``; the defended targets and shadows are independent
    jobs on the executor (:func:`m4i_utils.core.executor.run_jobs`), trained before any attack."""
    from m4i_utils.core.executor import run_jobs

    jobs = [(cfg, dataset, family, role, d) for d in sweep for role in ("target", "shadow")]
    run_jobs(cfg, _defended_job, jobs, desc="defended captioners")
    return [run_defense(cfg, dataset, family, d, experiment) for d in sweep]
