"""Reporting: tables beside the paper's numbers, figures (ROC, heatmaps, examples), attack diagnostics and the
defenses' privacy-utility report."""
