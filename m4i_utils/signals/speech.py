"""What the TTS attacker measures from a query (M4I appendix E, notebook 08).

* :func:`mb_scores`: the MB signal, minus the distance of the synthesised mel to the reference (DTW-aligned
  black-box output, and the teacher-forced output frame by frame).
* :func:`fb_features`: the FB input, text embedding minus synthesised-mel embedding (:class:`FBEncoders`),
  optionally with the reference mel's.
* :func:`blind_features`: what an attacker knows without querying the model (the blind baseline's input).
"""

from __future__ import annotations

import numpy as np

from m4i_utils.data.speech_sets import SpeechSet
from m4i_utils.models.tts import TrainedTTS, aligned_distance, dtw_distance, synthesize
from m4i_utils.models.tts_fb import FBEncoders, mel_features, text_features


def mb_scores(tts: TrainedTTS, s: SpeechSet) -> dict[str, np.ndarray]:
    """MB membership scores (higher = more likely a member) of every utterance of ``s``.

    ``dtw``: minus the DTW-aligned distance of the black-box synthesis to the reference mel;
    ``teacher_forced``: minus the frame distance when the reference durations are forced.
    """
    free = synthesize(tts, s, teacher_durations=False)
    forced = synthesize(tts, s, teacher_durations=True)
    return {
        "dtw": -np.array([dtw_distance(m, r) for m, r in zip(free, s.mels, strict=True)]),
        "teacher_forced": -np.array([aligned_distance(m, r) for m, r in zip(forced, s.mels, strict=True)]),
        "synth": free,
    }


def fb_features(enc: FBEncoders, s: SpeechSet, synth: list[np.ndarray]) -> dict[str, np.ndarray]:
    """FB attack inputs. ``paper``: text embedding minus the synthesised mel's embedding (input vs output,
    as M4I's image vs generated caption); ``with_reference``: that plus the reference mel's embedding minus
    the synthesised mel's (uses the ground-truth audio the attacker holds; beyond the paper)."""
    zt, zs, zr = enc.embed_text(s.texts), enc.embed_mel(synth), enc.embed_mel(s.mels)
    return {"paper": zt - zs, "with_reference": np.concatenate([zt - zs, zr - zs], axis=1)}


def blind_features(s: SpeechSet) -> np.ndarray:
    """What an attacker knows without querying the model: the text and the reference mel's summary."""
    return np.concatenate([text_features(s.texts), mel_features(s.mels)], axis=1)
