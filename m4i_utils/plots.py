"""Figure helpers shared by the notebooks; figures are named ``NN_stage__what`` after their notebook."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from m4i_utils.config import Config
from m4i_utils.records import Corpus


def save_figure(fig: Figure, cfg: Config, name: str) -> None:
    """Write ``fig`` as ``figures/<profile>/<name>.png`` and ``.pdf``."""
    for ext in ("png", "pdf"):
        fig.savefig(cfg.figures_dir / f"{name}.{ext}", dpi=120, bbox_inches="tight")


def show_examples(corpora: list[Corpus], per_corpus: int = 4, n_captions: int = 2) -> Figure:
    """A grid of example images (one row per corpus) with the first ``n_captions`` references under each."""
    fig, axes = plt.subplots(
        len(corpora), per_corpus, figsize=(3.2 * per_corpus, 3.4 * len(corpora)), squeeze=False
    )
    for row, corpus in zip(axes, corpora, strict=True):
        for ax, rec in zip(row, corpus.records[:per_corpus], strict=False):
            ax.imshow(rec.load_image())
            caps = "\n".join(textwrap.fill(c, 38) for c in rec.captions[:n_captions])
            ax.set_title(caps, fontsize=7, loc="left")
            ax.set_xlabel(f"{corpus.name}: {rec.id}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
