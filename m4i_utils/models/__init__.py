"""Models (targets, shadows and the attacker's feature extractor): Show-and-Tell captioners and their frozen
trunks, the DP-SGD captioner, the R2GenCMN-style report generator, the FastSpeech2-style TTS model, the
multimodal feature extractor (MFE) and the TTS attacker's FB encoders."""
