"""Hostile images: refused with a clear message, decoded only in the capped decoding process."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib

import pytest
from PIL import Image

from assistd.images import BadImage, ImageLimits, ImageReader, inspect_image, prepare_image
from assistd.images.limits import MiB, megabytes


def _png(width: int = 640, height: int = 480, mode: str = "RGB") -> bytes:
    return _encode(Image.new(mode, (width, height), (30, 120, 200)), "PNG")


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _declared_png(width: int, height: int) -> bytes:
    """A PNG whose header says width × height (RGB), with a few bytes of pixel data: tiny on disk."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _rss() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@pytest.fixture(scope="module")
def reader():
    with ImageReader(ImageLimits(timeout_s=20)) as r:
        yield r


def _refused(reader: ImageReader, data: bytes) -> str:
    with pytest.raises(BadImage) as caught:
        reader.inspect(data)
    assert caught.value.status_code == 400 and caught.value.code == "invalid_image"
    return caught.value.message


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_the_four_formats_are_read(reader, fmt, mime):
    data = _encode(Image.new("RGB", (123, 45), (250, 0, 0)), fmt)
    info = reader.inspect(data)
    assert (info.format, info.width, info.height, info.mime, info.animated) == (
        fmt.lower(),
        123,
        45,
        mime,
        False,
    )


def test_a_truncated_png_is_corrupt(reader):
    data = _png()
    assert _refused(reader, data[: len(data) // 2]).startswith("The image is corrupt or truncated: ")


def test_random_bytes_text_and_empty_files_are_not_images(reader):
    noise = os.urandom(4096)
    assert _refused(reader, noise) == "The file is not a PNG, JPEG, GIF or WebP image"
    assert _refused(reader, b"Hello, world\n" * 50) == "The file is not a PNG, JPEG, GIF or WebP image"
    assert _refused(reader, b"") == "The image is empty"
    garbage_png = b"\x89PNG\r\n\x1a\n" + noise  # the magic bytes, then nonsense: refused by the decoder
    message = _refused(reader, garbage_png)
    assert message == "The file is not a PNG, JPEG, GIF or WebP image" or message.startswith(
        "The image is corrupt or truncated: "
    )


def test_a_pixel_bomb_is_refused_from_its_header_before_decoding(reader):
    bomb = _declared_png(30000, 30000)
    assert len(bomb) < 200
    reader.inspect(_png(8, 8))  # the process is started
    before, started = _rss(), time.monotonic()
    message = _refused(reader, bomb)
    assert message == "The image has 30000×30000 pixels; at most 64,000,000 are allowed"
    assert time.monotonic() - started < 20  # decoding 900 million pixels would take far longer (and 3 GB)
    assert _rss() - before < 20 * MiB
    assert reader.pid is not None  # refused, not crashed: the process stays


def test_a_pixel_limit_of_the_operators_choice(reader):
    with ImageReader(ImageLimits(max_pixels=10_000)) as small:
        assert small.inspect(_png(100, 100)).width == 100
        assert _refused(small, _png(101, 100)) == "The image has 101×100 pixels; at most 10,000 are allowed"


def test_a_large_file_is_refused_before_the_decoder_sees_it():
    with ImageReader(ImageLimits(max_bytes=1 * MiB)) as small:
        data = _encode(Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3)), "PNG")
        assert len(data) > MiB
        message = _refused(small, data)
        assert message.startswith("The image is larger than 1 MB (it has ")
        assert small.pid is None  # never started


def test_the_decoding_process_memory_cap_is_applied():
    """With no pixel limit, the bomb gets to be decoded: the child's memory cap stops it, not the server."""
    limits = ImageLimits(max_pixels=10**12, memory_bytes=300 * MiB, timeout_s=20)
    with ImageReader(limits) as capped:
        capped.inspect(_png(8, 8))
        pid, before = capped.pid, _rss()
        message = _refused(capped, _declared_png(30000, 30000))  # 2.5 GiB of RGB once decoded
        assert "needs more than 300 MiB of memory to decode" in message
        assert "--image-decode-memory-mb" in message
        assert _rss() - before < 20 * MiB
        assert capped.pid is None or capped.pid != pid  # the process that hit its cap is gone
        assert capped.inspect(_png(10, 10)).width == 10  # and the next image gets a fresh one


def test_low_detail_fits_in_512(reader):
    prepared = reader.prepare(_png(2000, 1000), "low")
    assert (prepared.mime, prepared.width, prepared.height) == ("image/png", 512, 256)
    with Image.open(io.BytesIO(prepared.data)) as out:
        assert (out.format, out.size) == ("PNG", (512, 256))


def test_high_detail_keeps_an_image_that_fits_as_it_is(reader):
    for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        data = _encode(Image.new("RGB", (2048, 200), (1, 2, 3)), fmt)
        for detail in ("high", "auto"):
            prepared = reader.prepare(data, detail)
            assert prepared.data is data and (prepared.mime, prepared.width, prepared.height) == (
                mime,
                2048,
                200,
            )


def test_high_detail_scales_down_to_the_largest_side(reader):
    prepared = reader.prepare(_encode(Image.new("RGB", (3000, 1500), (1, 2, 3)), "JPEG"), "high")
    assert (prepared.mime, prepared.width, prepared.height) == ("image/png", 2048, 1024)
    assert reader.prepare(_png(2500, 2500, "RGBA"), "auto").width == 2048
    palette = _encode(Image.new("P", (2600, 100), 3), "GIF")
    assert (reader.prepare(palette, "high").width, reader.prepare(palette, "low").width) == (2048, 512)


def test_an_operators_largest_side_bounds_low_detail_too():
    with ImageReader(ImageLimits(max_side=300)) as small:
        assert (small.prepare(_png(900, 450), "high").width, small.prepare(_png(900, 450), "low").width) == (
            300,
            300,
        )


def test_an_animated_gif_gives_its_first_frame(reader):
    frames = [Image.new("RGB", (64, 32), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert reader.inspect(data).animated
    prepared = reader.prepare(data, "high")
    assert (prepared.mime, prepared.width, prepared.height) == ("image/png", 64, 32)
    with Image.open(io.BytesIO(prepared.data)) as out:
        assert out.convert("RGB").getpixel((5, 5)) == (255, 0, 0)


def test_webp_is_given_to_the_model_as_png(reader):  # llama.cpp's stb_image reads no WebP
    prepared = reader.prepare(_encode(Image.new("RGB", (40, 30), (9, 9, 9)), "WEBP"), "high")
    assert (prepared.mime, prepared.width, prepared.height) == ("image/png", 40, 30)


def test_an_unknown_detail_is_a_programming_error(reader):
    with pytest.raises(ValueError):
        reader.prepare(_png(), "medium")


def test_one_call_functions_run_a_process_of_their_own():
    limits = ImageLimits()
    assert inspect_image(_png(20, 10), limits).height == 10
    assert prepare_image(_png(1024, 1024), "low", limits).width == 512


def test_limits_from_settings():
    from assistd.config import Settings

    settings = Settings(image_max_bytes=5 * MiB, image_max_pixels=1000, image_decode_memory_mb=256)
    limits = ImageLimits.from_settings(settings)
    assert (limits.max_bytes, limits.max_pixels, limits.max_side) == (5 * MiB, 1000, 2048)
    assert (limits.memory_bytes, limits.timeout_s) == (256 * MiB, 30.0)
    assert (megabytes(20 * MiB), megabytes(int(1.5 * MiB))) == ("20 MB", "1.5 MB")
