"""The errors of images from clients: all three are the client's to fix (400), mapped by api/errors.py."""

from __future__ import annotations

from assistd.errors import InvalidRequest


class BadImage(InvalidRequest):
    """An image we will not read: too large, too many pixels, not PNG/JPEG/GIF/WebP, corrupt, or a
    malformed data: URL. The message says which."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param, code="invalid_image")


class ImageFetchRefused(InvalidRequest):
    """An image URL this server will not fetch: fetching is off, or the host (or scheme) is not allowed."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param, code="invalid_image_url")


class ImageFetchFailed(InvalidRequest):
    """An allowed image URL that could not be downloaded: an HTTP error status, too large, too slow,
    too many redirects, or the server could not be reached."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param, code="invalid_image_url")
