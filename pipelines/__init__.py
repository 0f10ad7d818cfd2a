"""Ray Data dataflows (preprocess, generation, scoring) and their stages."""
