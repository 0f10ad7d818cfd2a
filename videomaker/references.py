"""Reference images by path, or by name from scikit-image's bundled examples (no downloads)."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_PREFIX = "skimage:"


def load_reference(spec: str, *, argument: str = "--reference"):
    """A PIL RGB image from a path or `skimage:NAME` (e.g. `skimage:astronaut`)."""
    from PIL import Image

    if spec.startswith(EXAMPLE_PREFIX):
        from skimage import data

        name = spec[len(EXAMPLE_PREFIX):]
        if not hasattr(data, name):
            raise ValueError(f"{argument} {spec!r}: scikit-image has no example image {name!r} (try skimage:astronaut).")
        return Image.fromarray(getattr(data, name)()).convert("RGB")
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"{argument} {spec!r}: no such file.")
    return Image.open(path).convert("RGB")
