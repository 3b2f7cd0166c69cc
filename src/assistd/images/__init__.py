"""Images in messages: hostile images refused and made ready for the model (inspect.py, in a capped
process), image URLs fetched only where the operator allows it (fetch.py), data: URLs decoded
(data_url.py)."""

from assistd.images.data_url import decode_data_url, is_data_url
from assistd.images.errors import BadImage, ImageFetchFailed, ImageFetchRefused
from assistd.images.fetch import FetchPolicy, fetch_image
from assistd.images.inspect import ImageInfo, ImageReader, PreparedImage, inspect_image, prepare_image
from assistd.images.limits import ImageLimits

__all__ = [
    "BadImage",
    "FetchPolicy",
    "ImageFetchFailed",
    "ImageFetchRefused",
    "ImageInfo",
    "ImageLimits",
    "ImageReader",
    "PreparedImage",
    "decode_data_url",
    "fetch_image",
    "inspect_image",
    "is_data_url",
    "prepare_image",
]
