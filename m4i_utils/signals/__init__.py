"""Signals: what an attacker measures from a query, e.g. the similarity of a generated text to its
references (the one BLEU / ROUGE path of the project), or the distance of a synthesised mel to its reference
(TTS)."""
