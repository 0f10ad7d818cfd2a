"""Reference images by path, or by name from scikit-image's bundled examples (no downloads)."""

from __future__ import annotations

EXAMPLE_PREFIX = "skimage:"


def load_reference(spec: str, *, argument: str = "--reference"):
    """A PIL RGB image from a path, a URI (s3://...) or `skimage:NAME` (e.g. `skimage:astronaut`)."""
    from PIL import Image

    if spec.startswith(EXAMPLE_PREFIX):
        from skimage import data

        name = spec[len(EXAMPLE_PREFIX):]
        if not hasattr(data, name):
            raise ValueError(f"{argument} {spec!r}: scikit-image has no example image {name!r} (try skimage:astronaut).")
        return Image.fromarray(getattr(data, name)()).convert("RGB")
    import io

    from videomaker import storage

    try:
        data = storage.read_bytes(spec)
    except FileNotFoundError:
        raise FileNotFoundError(f"{argument} {spec!r}: no such file.") from None
    return Image.open(io.BytesIO(data)).convert("RGB")
