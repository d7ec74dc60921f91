"""Data: records, the dataset registry, loaders of the real formats (images + captions, R2Gen reports,
speech), the embedded synthetic worlds, tokenisation, and the disjoint seeded splits (captioning, and the TTS
speech roles)."""
