"""Experiments: the paper's shadow x target attack grid with its scenarios and settings, and the defense
recipes."""
