"""Attacks: shadow-trained classifiers and thresholds (metric-based SVM, feature-based MLP) and the blind
(model-free) baseline, and the DP audit (empirical epsilon lower bound from an attack's ROC)."""
