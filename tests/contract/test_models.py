"""Models: GET /v1/models and /v1/models/{id} list the configured GGUF models."""

from __future__ import annotations

import openai
from openai.types import Model

from tests.contract.helpers import MODEL, api_error, shaped, shaped_list
from tests.support import KEY_A, ServerProcess


def test_list_and_retrieve(client):
    page = shaped_list(client.models.with_raw_response.list(), Model, keys={"object", "data"})
    assert MODEL in [m.id for m in page.data]
    assert all(m.object == "model" and m.owned_by for m in page.data)
    model = shaped(client.models.with_raw_response.retrieve(MODEL), Model)
    assert model.id == MODEL and model.created > 0
    assert [m.id for m in client.models.list()] == [m.id for m in page.data]


def test_unknown_model_is_404(client):
    with api_error(openai.NotFoundError, 404, message="'no-such-model'"):
        client.models.retrieve("no-such-model")


async def test_async_models(aclient):
    page = shaped_list(await aclient.models.with_raw_response.list(), Model, keys={"object", "data"})
    assert MODEL in [m.id for m in page.data]
    assert shaped(await aclient.models.with_raw_response.retrieve(MODEL), Model).id == MODEL


def test_models_toml_entries_are_listed(tmp_path):
    toml = tmp_path / "models.toml"
    toml.write_text('[[models]]\nname = "other-model"\npath = "other.gguf"\nn_ctx = 2048\n')
    proc = ServerProcess(tmp_path / "data", args=["--models-file", str(toml), "--kernel-pool-size", "0"])
    try:
        client = openai.OpenAI(base_url=f"{proc.base_url}/v1", api_key=KEY_A, max_retries=0)
        assert {m.id for m in client.models.list()} == {MODEL, "other-model"}
        assert client.models.retrieve("other-model").id == "other-model"
        assert client.beta.assistants.create(model="other-model").model == "other-model"
    finally:
        proc.stop()
