"""Evaluation: benchmark generation, scoring, MLflow runs, comparison and the nightly gate."""
