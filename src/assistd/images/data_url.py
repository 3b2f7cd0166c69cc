"""`data:image/png;base64,...` URLs: the image bytes inside, or BadImage saying what is wrong."""

from __future__ import annotations

import base64
import binascii
import re

from assistd.images.errors import BadImage
from assistd.images.limits import megabytes

_SHAPE = "data:image/png;base64,..."
_WHITESPACE = re.compile(rb"[ \t\r\n]+")


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def decode_data_url(url: str, max_bytes: int | None = None) -> bytes:
    """The bytes of a base64 `data:image/...` URL. With `max_bytes`, a larger image is refused before it
    is decoded. Raises BadImage for a malformed URL or a media type that is not an image."""
    if not is_data_url(url):
        raise BadImage(f"Expected a data URL ({_SHAPE})")
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise BadImage(f"The data URL has no ',' before its data (expected {_SHAPE})")
    media_type, *params = (part.strip().lower() for part in header.split(";"))
    if not media_type.startswith("image/"):
        shown = media_type[:60] or "none"
        raise BadImage(f"The data URL's media type must be an image type such as image/png, not {shown!r}")
    if "base64" not in params:
        raise BadImage(f"The data URL must be base64-encoded ({_SHAPE})")
    try:
        encoded = _WHITESPACE.sub(b"", payload.encode("ascii"))
    except UnicodeEncodeError:
        raise BadImage("The data URL's data is not valid base64") from None
    if max_bytes is not None and len(encoded) // 4 * 3 > max_bytes + 2:
        raise BadImage(f"The image is larger than {megabytes(max_bytes)}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("The data URL's data is not valid base64") from None
    if not data:
        raise BadImage("The data URL holds no data")
    return data
