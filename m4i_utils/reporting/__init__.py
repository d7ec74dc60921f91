"""Reporting: tables beside the paper's numbers, figures (ROC, heatmaps, examples) and attack diagnostics."""
