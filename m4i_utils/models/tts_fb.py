"""The feature-based attacker's encoders for the TTS experiment (M4I appendix E, notebook 08).

M4I's FB attack on FastSpeech2 maps the input text and the output mel into one space with two 3-layer MLPs
(:class:`FBEncoders`), over fixed-size inputs: :func:`text_features` (character uni- and bigram counts) and
:func:`mel_features` (per-bin statistics of a variable-length mel). The attack features built from them are
in :mod:`m4i_utils.signals.speech`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m4i_utils.core.config import Config
from m4i_utils.core.runtime import rng_for
from m4i_utils.data import speech
from m4i_utils.data.speech_sets import N_SYMBOLS, SpeechSet
from m4i_utils.models.training import fit


def text_features(texts: list[str]) -> np.ndarray:
    """Bag of characters and character bigrams of each text (L2-normalised counts): the FB text input."""
    n = N_SYMBOLS
    out = np.zeros((len(texts), n + n * n), np.float32)
    for i, t in enumerate(texts):
        ids = np.asarray(speech.symbol_ids(t))
        np.add.at(out[i], ids, 1.0)
        np.add.at(out[i], n + ids[:-1] * n + ids[1:], 1.0)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)


def mel_features(mels: list[np.ndarray]) -> np.ndarray:
    """Per-bin mean, standard deviation and mean absolute frame-to-frame change, plus log length: the FB mel
    input (a fixed-size summary of a variable-length mel)."""
    rows = []
    for m in mels:
        delta = np.abs(np.diff(m, axis=0)).mean(0) if len(m) > 1 else np.zeros(m.shape[1])
        rows.append(np.concatenate([m.mean(0), m.std(0), delta, [np.log(len(m))]]))
    return np.asarray(rows, np.float32)


def _mlp3(d_in: int, d_out: int, hidden: int = 256) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))  # fmt: skip


class FBEncoders:
    """The FB attack's feature extractor: two 3-layer MLPs, text -> R^k and mel -> R^k (M4I appendix E).

    Trained on the attacker's public (text, reference mel) pairs to align the two views with a symmetric
    contrastive (InfoNCE) loss: a pair's embeddings close, other pairs' apart. Inputs are standardised with
    the public statistics.
    """

    def __init__(self, cfg: Config, public: SpeechSet) -> None:
        tf, mf = text_features(public.texts), mel_features(public.mels)
        self.t_mu, self.t_sd = tf.mean(0), tf.std(0) + 1e-4
        self.m_mu, self.m_sd = mf.mean(0), mf.std(0) + 1e-4
        torch.manual_seed(cfg.seed)
        self.text = _mlp3(tf.shape[1], cfg.tts_fb_dim)
        self.mel = _mlp3(mf.shape[1], cfg.tts_fb_dim)
        params = list(self.text.parameters()) + list(self.mel.parameters())
        opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)
        xt = torch.as_tensor((tf - self.t_mu) / self.t_sd)
        xm = torch.as_tensor((mf - self.m_mu) / self.m_sd)
        rng = rng_for(cfg.seed, "tts_fb_encoders")
        batch = min(128, len(public))

        def batches(_epoch: int, _gen):
            order = rng.permutation(len(public))
            return (torch.as_tensor(order[s : s + batch]) for s in range(0, len(order) - batch + 1, batch))

        def step_loss(model: nn.ModuleList, idx: torch.Tensor):
            text, mel = model
            zt = F.normalize(text(xt[idx]), dim=1)
            zm = F.normalize(mel(xm[idx]), dim=1)
            logits = zt @ zm.T / 0.1
            target = torch.arange(len(idx))
            return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2, 1

        both = nn.ModuleList([self.text, self.mel])
        fitted = fit(both, opt, batches, step_loss, cfg.tts_fb_epochs, numpy_rng=rng, desc="FB encoders")
        self.history: list[float] = fitted.history["train_loss"]  # mean loss over the epoch's batches
        self.text.eval()
        self.mel.eval()

    def embed_text(self, texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor((text_features(texts) - self.t_mu) / self.t_sd)
            return F.normalize(self.text(x), dim=1).numpy()

    def embed_mel(self, mels: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor((mel_features(mels) - self.m_mu) / self.m_sd)
            return F.normalize(self.mel(x), dim=1).numpy()

    def retrieval_recall(self, s: SpeechSet, k: int = 10) -> float:
        """Text -> mel recall@k on ``s`` (chance: k / len(s)): does the extractor align the views?"""
        sim = self.embed_text(s.texts) @ self.embed_mel(s.mels).T
        ranks = (sim > np.diag(sim)[:, None]).sum(1)
        return float((ranks < k).mean())
