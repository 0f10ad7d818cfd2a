"""Scoring: the metrics of `metrics/` over a manifest of generated videos, on a Ray Data actor pool."""
