"""Evaluation of score matrices: reliability diagnostics, similarity, null distributions, homogeneity."""
