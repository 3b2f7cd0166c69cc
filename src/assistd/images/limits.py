"""What one image from a client may cost: its bytes, its pixels, the size it is given to the model at, and
the memory and time of the process that decodes it (see inspect.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MiB = 1024 * 1024

# The default pixel limit: 64 million pixels (8000×8000) lets through the photos of today's cameras and
# phones (a 61 MP full-frame sensor: 9504×6336) and costs at most 256 MiB decoded (4 bytes a pixel), well
# inside the decoding process's 1 GiB. Pillow's own bomb warning starts at 89 million.
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * MiB  # the encoded image, as the hosted API's 20 MB
    max_pixels: int = DEFAULT_MAX_PIXELS  # width × height declared in the header, checked before decoding
    max_side: int = 2048  # detail "high"/"auto": larger images are scaled down to fit max_side × max_side
    low_side: int = 512  # detail "low": scaled down to fit 512 × 512, as the hosted API does
    memory_bytes: int = 1024 * MiB  # address space (RLIMIT_AS) of the decoding process
    timeout_s: float = 30.0  # decoding (and scaling) one image

    @classmethod
    def from_settings(cls, settings: Any) -> ImageLimits:
        return cls(
            max_bytes=settings.image_max_bytes,
            max_pixels=settings.image_max_pixels,
            max_side=settings.image_max_side,
            memory_bytes=settings.image_decode_memory_mb * MiB,
            timeout_s=settings.image_decode_timeout,
        )


def megabytes(n: int) -> str:
    """20 MB, 1.5 MB, as the hosted API's messages write it (20 MB means 20 MiB there too)."""
    return f"{n / MiB:.1f}".removesuffix(".0") + " MB"
