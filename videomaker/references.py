"""Reference images by path, or by name from scikit-image's bundled examples (no downloads).

Preprocessing follows the released inference code, `load_image(path).resize((512, 512))`:
1. EXIF orientation is applied (`ImageOps.exif_transpose`, as diffusers' `load_image` does), so a
   phone photo stored sideways is used upright.
2. Transparency is flattened onto white (`background`), the colour SHP puts behind the subject in
   training references. (diffusers' `load_image` calls `convert("RGB")`, which drops the alpha
   channel and keeps whatever colour the transparent pixels store; pass `background=None` for that.)
3. `prepare_reference` stretches the image to the model size with PIL's default filter for RGB
   (bicubic): no centre crop, the aspect ratio is not kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # PIL and numpy are imported where used
    import numpy as np
    from PIL import Image

EXAMPLE_PREFIX = "skimage:"
WHITE = (255, 255, 255)


def to_rgb(image: Image.Image, *, background: tuple[int, int, int] | None = WHITE) -> Image.Image:
    """An RGB PIL image: EXIF orientation applied, transparency composited onto `background`.

    Args:
        image: A PIL image of any mode.
        background: RGB colour behind transparent pixels; None drops the alpha channel as
            `convert("RGB")` does.
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha and background is not None:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*background, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return image.convert("RGB")


def prepare_reference(image: Image.Image | np.ndarray, size: int | tuple[int, int]) -> Image.Image:
    """Stretch a reference to the model size as the released code does (`image.resize((W, H))`).

    Args:
        image: PIL image (any mode: EXIF orientation and transparency handled as `to_rgb`) or
            uint8 `(H, W, 3)` RGB array.
        size: Square side, or `(height, width)`.
    """
    import numpy as np
    from PIL import Image

    height, width = (size, size) if isinstance(size, int) else size
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"`image` must be a uint8 (H, W, 3) array, got dtype {image.dtype} shape {image.shape}.")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"`image` must be a PIL image or a uint8 array, got {type(image).__name__}.")
    image = to_rgb(image)
    return image if image.size == (width, height) else image.resize((width, height))  # PIL's default filter


def load_reference(spec: str, *, argument: str = "--reference", background: tuple[int, int, int] | None = WHITE) -> Image.Image:
    """A PIL RGB image from a path, a URI (s3://...) or `skimage:NAME` (e.g. `skimage:astronaut`).

    EXIF orientation is applied and transparency flattened onto `background` (white; see the
    module docstring). The image keeps its size: `prepare_reference` stretches it to the model's.
    """
    from PIL import Image, UnidentifiedImageError

    if spec.startswith(EXAMPLE_PREFIX):
        from skimage import data

        name = spec[len(EXAMPLE_PREFIX) :]
        if not hasattr(data, name):
            raise ValueError(f"{argument} {spec!r}: scikit-image has no example image {name!r} (try skimage:astronaut).")
        return to_rgb(Image.fromarray(getattr(data, name)()), background=background)
    import io

    from videomaker import storage

    try:
        data = storage.read_bytes(spec)
    except FileNotFoundError:
        raise FileNotFoundError(f"{argument} {spec!r}: no such file.") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{argument} {spec!r} is not a readable image ({error}); give a PNG, JPEG or WebP file.") from None
    return to_rgb(image, background=background)
