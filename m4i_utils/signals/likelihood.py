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


def report_logprob(model, images: torch.Tensor, tokens: torch.Tensor, batch: int = 128) -> np.ndarray:
    """Per study: a report generator's (:class:`m4i_utils.models.r2gen.R2GenCMN`) mean token log-probability
    of the study's reference report under teacher forcing (``tokens``: ``<bos> ... <eos>`` ids, 0-padded,
    one row per image; ``<bos>`` is not scored). The grey-box signal of the medical calibrated attacks."""
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(tokens), batch):
            t = tokens[s : s + batch]
            t = t[:, : int((t != 0).sum(1).max())]
            logits = model(images[s : s + batch], t)  # predicts t[:, 1:]
            logp = logits.log_softmax(-1).gather(-1, t[:, 1:].unsqueeze(-1)).squeeze(-1)
            mask = (t[:, 1:] != 0).to(logp.dtype)
            out.append(((logp * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out).astype(np.float64)
