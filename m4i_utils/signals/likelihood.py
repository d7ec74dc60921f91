"""Grey-box signal of a captioner: how likely it finds each record's reference captions.

The attacker of this signal reads the model's token probabilities (teacher forcing), which the M4I threat
model (black-box: generated text only) does not grant; results that use it are labelled grey-box. It is the
canonical per-example signal of LiRA for sequence models (Carlini et al. 2022 use the model's confidence in
the true label; for text, the likelihood of the reference).
"""

from __future__ import annotations

import numpy as np
import torch

from m4i_utils.data.records import Corpus
from m4i_utils.models.captioner import TrainedCaptioner, caption_logprob, encode_captions


def reference_logprob(
    captioner: TrainedCaptioner, feats: torch.Tensor, corpus: Corpus, max_len: int
) -> np.ndarray:
    """Per record of ``corpus`` (trunk features ``feats``, one row per record): the mean over its reference
    captions of the captioner's mean token log-probability (words outside its vocabulary are ``<unk>``)."""
    rows, tokens = encode_captions(corpus, captioner.vocab, max_len)
    per_pair = caption_logprob(captioner.model, feats, rows, tokens)
    counts = np.bincount(rows.numpy(), minlength=len(corpus))
    return np.bincount(rows.numpy(), weights=per_pair, minlength=len(corpus)) / counts
