"""Metric definitions (CLIP-T, CLIP-I, DINO-I, Face Sim, T.Cons, DD) and their model backends."""
