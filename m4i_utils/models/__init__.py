"""Models (targets, shadows and the attacker's feature extractor): Show-and-Tell captioners and their frozen
trunks, the R2GenCMN-style report generator, the FastSpeech2-style TTS model, the multimodal feature
extractor (MFE)."""
