"""tests/vision_model.py: the tiny vision model builds (once, cached) and llama.cpp's server loads it with
its projector: /props reports vision, an image costs 18 prompt tokens (16 and the two image markers)."""

from __future__ import annotations

import base64
import io

import httpx
import pytest

from tests.vision_model import build_vision_model


def png(color: str) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def engine():
    import xllamacpp

    model, mmproj = build_vision_model()
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.mmproj.path = str(mmproj)
    params.n_parallel = 1
    params.n_ctx = 1024
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.api_keys = ["test-key"]
    params.verbosity = 0
    server = xllamacpp.Server(params)
    client = httpx.Client(
        base_url=server.listening_address, headers={"Authorization": "Bearer test-key"}, timeout=60
    )
    yield client
    client.close()
    del server


def test_the_engine_loads_the_projector_and_counts_an_image_as_18_tokens(engine):
    props = engine.get("/props").json()
    assert props["modalities"]["vision"] is True
    marker = props["media_marker"]

    def complete(prompt, images=None):
        body = {"prompt_string": prompt, "multimodal_data": images} if images else prompt
        reply = engine.post("/completion", json={"prompt": body, "n_predict": 4, "temperature": 0})
        assert reply.status_code == 200, reply.text
        return reply.json()

    text = complete("Look:\n\n")
    red, blue = complete(f"Look:\n{marker}\n", [png("red")]), complete(f"Look:\n{marker}\n", [png("blue")])
    assert red["tokens_evaluated"] == blue["tokens_evaluated"] == text["tokens_evaluated"] + 18
    assert red["content"] != blue["content"]  # the projection is not zero: the image reaches the model
