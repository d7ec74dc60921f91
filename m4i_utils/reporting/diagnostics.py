"""Diagnostics of the feature-based attack: t-SNE of attack features and MFE alignment (paper Figs 7, 11)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from m4i_utils.core.config import Config
from m4i_utils.experiments.attack_grid import Featurize, ModelSpec, generated_and_references, query_parts


def tsne_members(
    cfg: Config, featurize: Featurize, target: ModelSpec, shadow: ModelSpec, max_points: int = 600
) -> Figure:
    """t-SNE of member vs non-member attack features of ``target`` and ``shadow`` (iid setting)."""
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    rng = np.random.default_rng(cfg.seed)
    for ax, model in zip(axes, (target, shadow), strict=True):
        feats, labels = [], []
        for part in query_parts(cfg, model, "iid"):
            x = featurize(model, part, shadow)
            keep = rng.permutation(len(x))[: max_points // 2]
            feats.append(x[keep])
            labels.append(np.full(len(keep), part.label))
        x, y = np.concatenate(feats), np.concatenate(labels)
        tsne = TSNE(n_components=2, init="pca", random_state=cfg.seed, perplexity=min(30, len(x) // 4))
        emb = tsne.fit_transform(x)
        for label, colour, name in ((0, "tab:blue", "non-member"), (1, "tab:red", "member")):
            ax.scatter(*emb[y == label].T, s=6, alpha=0.6, c=colour, label=name)
        ax.set_title(f"{model.role} {model.name}: FB features (t-SNE)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend()
    fig.tight_layout()
    return fig


def fb_alignment(cfg: Config, targets: list[ModelSpec]) -> pd.DataFrame:
    """Per target: mean ||F_img - F_txt|| (Euclidean) for generated vs reference captions, members vs
    non-members (iid), beside the MFE's mean squared error on its training and held-out public pairs.

    Uses the MFE of the target's own dataset (the unrestricted attacker's). If generated captions of members
    sit closer to their images than those of non-members, the FB feature carries membership signal; the
    MFE's train vs held-out distance (notebook 05) says whether the MFE itself generalises.
    """
    from m4i_utils.data.bundles import load_bundle
    from m4i_utils.models.mfe import get_mfe
    from m4i_utils.models.trunks import features_for

    rows, captioners = [], {}
    for target in targets:
        mfe = get_mfe(cfg, target.dataset)
        for part in query_parts(cfg, target, "iid"):
            corpus = load_bundle(cfg, part.dataset).role(part.role)
            hyps, refs, _ = generated_and_references(cfg, target, part, captioners)
            img = mfe.image_features(features_for(cfg, part.dataset, mfe.family).take(corpus))
            d_gen = (img - mfe.text_features(hyps)).norm(dim=1).mean().item()
            flat = [c for caps in refs for c in caps]
            owner = np.repeat(np.arange(len(refs)), [len(c) for c in refs])
            d_ref = (img[owner] - mfe.text_features(flat)).norm(dim=1).mean().item()
            rows.append(
                {
                    "target": target.name,
                    "set": "member" if part.label else "non-member",
                    "dist_generated": d_gen,
                    "dist_reference": d_ref,
                    "mfe_train_mse": mfe.report["train"]["distance"],
                    "mfe_heldout_mse": mfe.report["heldout"]["distance"],
                }
            )
    return pd.DataFrame(rows)
