"""The image decoding process: `python -m assistd.images.child LIMITS MEMORY SECONDS`.

Started and fed by `ImageReader` (inspect.py) through the capped-process machinery of file_search's text
extraction (`extract_process.CappedProcess`, `extract_child.serve`): Pillow is imported, the address space
capped (RLIMIT_AS), then requests are answered one at a time:

    request:  one JSON line {"format": "png"|"jpeg"|"gif"|"webp", "fit": int|null, "keep": bool,
              "size": int}, then `size` raw bytes
    reply:    one JSON line {"image": {"format", "width", "height", "animated", "png"}} ("png": the scaled
              first frame as base64, or null when the original bytes serve)
              or {"error": str}     (a BadImage message: the image cannot be used)
              or {"failure": str}   (a fault of ours)
              with "exiting": true when the process ends after this reply (a MemoryError or a failure)
"""

from __future__ import annotations

import base64
import json
import sys
import traceback
from typing import Any

from assistd.images.decode import FORMATS, decode
from assistd.images.errors import BadImage
from assistd.images.limits import ImageLimits
from assistd.tools.file_search.extract_child import serve
from assistd.tools.file_search.limits import size


def main(argv: list[str]) -> int:
    limits = ImageLimits(**json.loads(argv[1]))
    memory, seconds = int(argv[2]), float(argv[3])
    return serve(lambda header, data: _handle(header, data, limits, memory), memory, seconds, _preload)


def _handle(header: dict[str, Any], data: bytes, limits: ImageLimits, memory: int) -> tuple[dict, bool]:
    try:
        if header.get("format") not in FORMATS:
            raise BadImage("The file is not a PNG, JPEG, GIF or WebP image")
        done = decode(data, header["format"], limits, header.get("fit"), bool(header.get("keep")))
        png = base64.b64encode(done.png).decode("ascii") if done.png is not None else None
        image = {"format": done.format, "width": done.width, "height": done.height, "animated": done.animated}
        return {"image": {**image, "png": png}}, False
    except BadImage as exc:
        return {"error": exc.message}, False
    except MemoryError:
        return {"error": _too_big(memory)}, True
    except Exception as exc:
        traceback.print_exc()
        return {"failure": f"{type(exc).__name__}: {str(exc)[:300]}"}, True


def _too_big(memory: int) -> str:
    return (
        f"The image needs more than {size(memory)} of memory to decode (limit, --image-decode-memory-mb); "
        "it may be a decompression bomb"
    )


def _preload() -> None:
    """Pillow and the four formats' plugins, imported once before the memory cap."""
    from PIL import GifImagePlugin, Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401


if __name__ == "__main__":
    sys.exit(main(sys.argv))
