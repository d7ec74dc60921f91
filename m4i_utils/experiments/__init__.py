"""Experiments: the paper's shadow x target attack grid with its scenarios and settings, the defense
recipes, and the TTS attacks."""
