"""Images from clients, checked and made ready for the model without trusting them.

`ImageReader` checks what costs nothing here (the byte size, the format's magic bytes), then hands the
image to its decoding process (child.py, decode.py), capped in memory and time like file_search's text
extraction: there the header's width × height is checked before any pixel is decoded (decompression
bombs), the first frame is decoded in full (corrupt or truncated data), and for `prepare` scaled down:

- detail "low": to fit in 512 × 512 (as the hosted API);
- detail "high" / "auto": only to fit in max_side × max_side (2048).

A scaled image, the first frame of an animation, and a WebP image (llama.cpp's image loader, stb_image,
reads no WebP) come back as PNG; any other image as its original bytes. Everything refused raises
BadImage with a message for the client. The child's reply is checked, never trusted.

Build one `ImageReader` (it keeps its process) and close it; `inspect_image` / `prepare_image` run a
reader of their own for one call (a Python start-up: for scripts and tests). Blocking: call from a thread.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, dataclass
from typing import Any

from assistd.images.decode import NOT_AN_IMAGE, scaled
from assistd.images.errors import BadImage
from assistd.images.limits import ImageLimits, megabytes
from assistd.tools.file_search.extract_process import CappedProcess, ChildDied
from assistd.tools.file_search.limits import size

MIME = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
DETAILS = ("low", "high", "auto")
KEEP = frozenset({"png", "jpeg", "gif"})  # formats given to the model as they are when not scaled
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageInfo:
    format: str  # png, jpeg, gif, webp
    width: int
    height: int
    mime: str
    animated: bool = False  # only the first frame is used


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    mime: str
    width: int
    height: int


class ImageReader(CappedProcess):
    """Owns the image decoding process (started on first use, kept; one image at a time)."""

    module = "assistd.images.child"
    name = "image decoding process"
    memory_flag = "--image-decode-memory-mb"

    def __init__(self, limits: ImageLimits | None = None, check_seconds: float = 1.0) -> None:
        self.limits = limits or ImageLimits()
        super().__init__(self.limits.memory_bytes, self.limits.timeout_s, check_seconds)

    @classmethod
    def from_settings(cls, settings: Any) -> ImageReader:
        return cls(ImageLimits.from_settings(settings))

    def config(self) -> dict[str, Any]:
        return asdict(self.limits)

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def inspect(self, data: bytes) -> ImageInfo:
        """The image's format and size, once it is known to decode within the limits. Raises BadImage."""
        info, _ = self._read(data, fit=None, keep=True)
        return info

    def prepare(self, data: bytes, detail: str = "auto", keep: frozenset[str] = KEEP) -> PreparedImage:
        """The image as the model gets it (see the module's docstring). Raises BadImage."""
        if detail not in DETAILS:
            raise ValueError(f"detail must be one of {DETAILS}, not {detail!r}")
        fit = min(self.limits.low_side, self.limits.max_side) if detail == "low" else self.limits.max_side
        info, png = self._read(data, fit=fit, keep=sniff_format(data) in keep)
        if png is None:
            return PreparedImage(data, info.mime, info.width, info.height)
        width, height = scaled(info.width, info.height, fit)
        return PreparedImage(png, "image/png", width, height)

    # ------------------------------------------------------------------------------------------ checks
    def _read(self, data: bytes, fit: int | None, keep: bool) -> tuple[ImageInfo, bytes | None]:
        fmt = self._precheck(data)
        try:
            reply = self.request({"format": fmt, "fit": fit, "keep": keep}, data)
        except TimeoutError:
            raise BadImage(
                f"Decoding the image took longer than {self.timeout_seconds:g} s (limit, "
                "--image-decode-timeout): it may be damaged or a decompression bomb"
            ) from None
        except ChildDied as exc:
            raise BadImage(
                f"The image decoder {exc.how} while reading the image: it may be damaged, or need more "
                f"than {size(self.memory_bytes)} of memory (limit, --image-decode-memory-mb)"
            ) from None
        if "error" in reply:
            raise BadImage(str(reply["error"]))
        if "image" not in reply:
            raise RuntimeError(f"the image decoding process failed: {reply.get('failure')}")
        return self._checked(reply["image"], fmt, fit)

    def _precheck(self, data: bytes) -> str:
        if len(data) > self.limits.max_bytes:
            raise BadImage(
                f"The image is larger than {megabytes(self.limits.max_bytes)} (it has {megabytes(len(data))})"
            )
        if not data:
            raise BadImage("The image is empty")
        fmt = sniff_format(data)
        if fmt is None:
            raise BadImage(NOT_AN_IMAGE)
        return fmt

    def _checked(self, image: Any, fmt: str, fit: int | None) -> tuple[ImageInfo, bytes | None]:
        """The child's reply, believed only where it is consistent."""
        try:
            width, height, animated, png = image["width"], image["height"], image["animated"], image["png"]
            if image["format"] != fmt or not (type(width) is int and type(height) is int):
                raise ValueError("format or size")
            if not (width > 0 and height > 0 and width * height <= self.limits.max_pixels):
                raise ValueError("size out of range")
            data = None
            if png is not None:
                data = base64.b64decode(png, validate=True)
                if fit is None or not data.startswith(_PNG_MAGIC):
                    raise ValueError("png")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise RuntimeError(
                f"the image decoding process sent a reply that makes no sense ({exc})"
            ) from None
        return ImageInfo(fmt, width, height, MIME[fmt], bool(animated)), data


def sniff_format(data: bytes) -> str | None:
    """png, jpeg, gif or webp by the file's magic bytes; None for anything else."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def inspect_image(data: bytes, limits: ImageLimits, reader: ImageReader | None = None) -> ImageInfo:
    """`ImageReader.inspect` on `reader`, or on a reader of its own for this one call."""
    if reader is not None:
        return reader.inspect(data)
    with ImageReader(limits) as own:
        return own.inspect(data)


def prepare_image(
    data: bytes, detail: str, limits: ImageLimits, reader: ImageReader | None = None
) -> PreparedImage:
    """`ImageReader.prepare` on `reader`, or on a reader of its own for this one call."""
    if reader is not None:
        return reader.prepare(data, detail)
    with ImageReader(limits) as own:
        return own.prepare(data, detail)
