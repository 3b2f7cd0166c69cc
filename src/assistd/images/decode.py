"""Pillow's part: open, check, decode and scale one image. Runs only in the decoding process (child.py),
never in the server: a decoder's fault or a bomb costs that process, whose memory and time are capped.

The header is read first (`Image.open` reads no pixel data) and its width × height checked against the
limit before anything is decoded; then the first frame is decoded in full (`load()`), which is what finds
corrupt or truncated data. Only the four formats' plugins are ever tried.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

from assistd.images.errors import BadImage
from assistd.images.limits import ImageLimits

FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}  # ours -> Pillow's
NOT_AN_IMAGE = "The file is not a PNG, JPEG, GIF or WebP image"
_KEEP_MODES = ("L", "RGB", "RGBA")  # scaled and written as PNG as they are; others are converted


@dataclass(frozen=True)
class Decoded:
    format: str  # png, jpeg, gif, webp
    width: int
    height: int
    animated: bool
    png: bytes | None = None  # the first frame, scaled down and as PNG, when it was asked for and needed


def decode(data: bytes, fmt: str, limits: ImageLimits, fit: int | None, keep: bool) -> Decoded:
    """Checks and decodes `data`, sniffed as `fmt`. With `fit`, the first frame scaled down to fit in
    fit × fit comes back as PNG when it had to be scaled, is animated, or is not to be `keep`t as it is."""
    image = _open(data, fmt, limits)
    with image:
        animated = _load(image, limits)
        width, height = image.size
        png = None
        if fit is not None:
            target = scaled(width, height, fit)
            if target != (width, height) or animated or not keep:
                png = _png(image, target)
        return Decoded(fmt, width, height, animated, png)


def scaled(width: int, height: int, fit: int) -> tuple[int, int]:
    """The size of an image scaled down (never up) to fit in fit × fit, keeping its aspect ratio."""
    scale = min(fit / width, fit / height, 1.0)
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(data: bytes, fmt: str, limits: ImageLimits) -> ImageFile.ImageFile:
    Image.MAX_IMAGE_PIXELS = None  # our own check below names the size; Pillow's applies while decoding
    try:
        image = Image.open(io.BytesIO(data), formats=[FORMATS[fmt]])
    except UnidentifiedImageError:
        raise BadImage(NOT_AN_IMAGE) from None
    except Exception as exc:  # a plugin that chokes on a broken header
        raise BadImage(f"The image is corrupt or truncated: {_reason(exc)}") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        image.close()
        raise BadImage(f"The image has {width}×{height} pixels; at most {limits.max_pixels:,} are allowed")
    if width < 1 or height < 1:
        image.close()
        raise BadImage(f"The image is corrupt or truncated: it has {width}×{height} pixels")
    return image


def _load(image: ImageFile.ImageFile, limits: ImageLimits) -> bool:
    """Decodes the first frame; whether there are more (an animation: only the first is used)."""
    Image.MAX_IMAGE_PIXELS = limits.max_pixels  # frames of a GIF are checked as they are decoded
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            animated = bool(getattr(image, "is_animated", False))  # looks for a second frame, then back
            image.load()
            return animated
        except MemoryError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImage(
                f"The image has a frame of more than {limits.max_pixels:,} pixels; "
                f"at most {limits.max_pixels:,} are allowed"
            ) from None
        except Exception as exc:  # OSError, SyntaxError, EOFError, zlib/struct errors...: damaged data
            raise BadImage(f"The image is corrupt or truncated: {_reason(exc)}") from None


def _png(image: Image.Image, size: tuple[int, int]) -> bytes:
    frame = image if image.mode in _KEEP_MODES else image.convert("RGBA" if _has_alpha(image) else "RGB")
    if frame.size != size:
        frame = frame.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    frame.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]
