"""Every model kind by name: one line per kind (``kind -> "module:loader"``), imported only when used.

A loader ``loader(cfg, **spec)`` trains the model or loads it from the cache and returns a
:class:`~m4i_utils.models.base.Target`.
"""

from __future__ import annotations

from typing import Any

from m4i_utils.core.plugins import resolve
from m4i_utils.models.base import Target

TARGETS: dict[str, str] = {
    "captioner": "m4i_utils.models.captioner:get_captioner",  # Show-and-Tell (M4I section 4.1)
    "tts": "m4i_utils.models.tts:load_tts",  # FastSpeech2-style text-to-mel (M4I appendix E)
    # R2GenCMN-style report generator and its CNN+LSTM shadow (M4I appendix G)
    "report_generator": "m4i_utils.experiments.report_generation:load_report_generator",
}


def load_target(kind: str, cfg: Any, **spec: Any) -> Target:
    """The trained model of ``kind`` described by ``spec`` (e.g. dataset, family, role, train_seed).

    Raises:
        ValueError: unknown kind, listing the registered ones.
    """
    target = resolve(TARGETS, kind, "model kind", "kinds")(cfg, **spec)
    if not isinstance(target, Target):
        raise TypeError(f"{TARGETS[kind]} returned {type(target).__name__}, which is not a Target")
    return target
