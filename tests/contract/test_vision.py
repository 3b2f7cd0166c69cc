"""Images reach the model: a vision GGUF with its projector (a tiny random-weight Gemma 3 built offline by
tests/vision_model.py) on the embedded engine and on a remote llama.cpp server, driven with the official
SDK. The model's words are noise; the proof is mechanical: the engine sees vision, an image adds its
tokens to the prompt (18 here: 16 + the projector's two markers), different images give different greedy
answers, earlier turns' images stay in the prompt (and in the engine's KV cache), bad images are 400s, a
model that cannot see refuses, remote image URLs are fetched only from allowlisted hosts."""

from __future__ import annotations

import base64
import http.server
import io
import os
import struct
import subprocess
import sys
import threading
import zlib

import openai
import pytest
from PIL import Image

from tests.contract.helpers import MODEL, api_error
from tests.remote_engine import EngineProcess
from tests.support import KEY_A, MODELS_DIR, ServerProcess, free_port
from tests.vision_model import build_vision_model

pytestmark = pytest.mark.contract

VISION = "tiny-vision"
IMAGE_TOKENS = 18  # the projector's 16 + <start_of_image> and <end_of_image>
QUESTION = "What is in the picture?"
MAX_BYTES = 3_000_000  # --image-max-bytes of the server here


def png(color: tuple[int, int, int], size: tuple[int, int] = (48, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def ended(job) -> bool:
    """A run or response that ran through: completed, incomplete at its token cap, or failed because the
    random-weight model's reply was empty (its words are noise: what is checked is what it was given)."""
    if job.status in ("completed", "incomplete"):
        return True
    error = getattr(job, "last_error", None) or getattr(job, "error", None)
    return job.status == "failed" and error is not None and "gave no answer" in error.message


def declared_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height pixels, a few bytes on disk (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + chunk(b"IEND", b"")
    )


class ImageHost:
    """A local web server with images (and a redirect off the allowlist); it counts what it served."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append(self.path)
                if self.path == "/away.png":  # to a host name the allowlist does not hold
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{host.port}/green.png")
                    self.end_headers()
                    return
                body = png((0, 200, 0))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def vision_files():
    return build_vision_model()


@pytest.fixture(scope="module")
def host():
    served = ImageHost()
    yield served
    served.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, vision_files, host):
    """assistd with the tiny vision model (embedded engine) beside the default text model; image URLs
    fetched from 127.0.0.1 only."""
    model, mmproj = vision_files
    base = tmp_path_factory.mktemp("vision")
    models = base / "models.toml"
    models.write_text(
        f'[[models]]\nname = "{VISION}"\npath = "{model}"\nmmproj = "{mmproj}"\nn_ctx = 1024\nparallel = 2\n'
    )
    args = ["--models-file", str(models), "--kernel-pool-size", "0", "--image-url-fetch"]
    args += ["--image-max-bytes", str(MAX_BYTES)]
    proc = ServerProcess(base / "data", args=[*args, "--image-url-allow", "127.0.0.1"])
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def assistant(client) -> str:
    return client.beta.assistants.create(model=VISION, temperature=0).id


def run_on(client, assistant, content, **options):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": content}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant, max_completion_tokens=6, temperature=0, **options
    )
    return thread, run


def reply_of(client, thread_id: str) -> str:
    message = client.beta.threads.messages.list(thread_id, order="desc", limit=1).data[0]
    return message.content[0].text.value if message.content else ""


def test_the_models_say_which_of_them_see_images(client, vision_files, tmp_path):
    listed = {m.id: m for m in client.models.list()}
    assert listed[VISION].model_extra.get("capabilities") == {"vision": True}
    assert "capabilities" not in (listed[MODEL].model_extra or {})  # the text model: the SDK's shape
    model, mmproj = vision_files
    models = tmp_path / "models.toml"
    env = {**os.environ, "ASSISTD_MODELS_FILE": str(models), "ASSISTD_MODELS_DIR": str(MODELS_DIR)}

    def models_list() -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "assistd", "models", "list"]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    models.write_text(f'[[models]]\nname = "{VISION}"\npath = "{model}"\nmmproj = "{mmproj}"\n')
    shown = models_list()
    assert shown.returncode == 0, shown.stderr
    lines = {line[2:].split()[0]: line for line in shown.stdout.splitlines()}
    assert "images yes" in lines[VISION] and "images no" in lines[MODEL]
    models.write_text(f'[[models]]\nname = "{VISION}"\npath = "{model}"\nprojector = "{mmproj}"\n')
    wrong = models_list()
    assert wrong.returncode != 0 and "projector" in wrong.stderr  # a key it does not know: not silence


def test_an_uploaded_image_reaches_the_model_at_its_place(client, assistant):
    _, text_only = run_on(client, assistant, QUESTION)
    answers, usages = {}, {}
    for name, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        image = client.files.create(file=(f"{name}.png", png(color)), purpose="vision")
        assert image.purpose == "vision"
        thread, run = run_on(
            client,
            assistant,
            [{"type": "text", "text": QUESTION}, {"type": "image_file", "image_file": {"file_id": image.id}}],
        )
        assert ended(run), run.last_error
        answers[name], usages[name] = reply_of(client, thread.id), run.usage
    assert usages["red"].prompt_tokens == usages["blue"].prompt_tokens
    grown = usages["red"].prompt_tokens - text_only.usage.prompt_tokens
    assert IMAGE_TOKENS <= grown <= IMAGE_TOKENS + 2  # the image's tokens (and the line it stands on)
    assert answers["red"] != answers["blue"]  # greedy decoding: only what the model saw differs


def test_data_urls_at_each_detail_and_images_in_additional_messages(client, assistant):
    for detail in ("low", "high", "auto"):
        part = {
            "type": "image_url",
            "image_url": {"url": data_url(png((10, 200, 30), (900, 300))), "detail": detail},
        }
        _, run = run_on(client, assistant, [{"type": "text", "text": QUESTION}, part])
        assert ended(run), (detail, run.last_error)
        assert run.usage.prompt_tokens >= IMAGE_TOKENS
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant,
        additional_messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image_url", "image_url": {"url": data_url(png((0, 0, 0)))}},
                ],
            }
        ],
        max_completion_tokens=6,
    )
    assert ended(run), run.last_error
    assert run.usage.prompt_tokens >= IMAGE_TOKENS + 5


def test_an_image_of_an_earlier_turn_stays_in_the_prompt_and_the_cache(client):
    first = client.responses.create(
        model=VISION,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": QUESTION},
                    {"type": "input_image", "image_url": data_url(png((255, 255, 0)))},
                ],
            }
        ],
        max_output_tokens=16,
        temperature=0,
    )
    assert ended(first), first.error
    second = client.responses.create(
        model=VISION,
        previous_response_id=first.id,
        input="And its color?",
        max_output_tokens=16,
        temperature=0,
    )
    assert ended(second), second.error
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    # the first turn's prompt, image included, is reused from the engine's KV cells: not decoded again
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens - 2


def test_responses_take_input_images_by_file_and_url_and_count_them(client):
    image = client.files.create(file=("cyan.png", png((0, 255, 255))), purpose="vision")
    for part in (
        {"type": "input_image", "file_id": image.id, "detail": "auto"},
        {"type": "input_image", "image_url": data_url(png((0, 255, 255))), "detail": "low"},
    ):
        items = [{"role": "user", "content": [{"type": "input_text", "text": QUESTION}, part]}]
        counted = client.responses.input_tokens.count(model=VISION, input=items)
        response = client.responses.create(model=VISION, input=items, max_output_tokens=16, temperature=0)
        assert ended(response), response.error
        assert response.usage.input_tokens == counted.input_tokens
        plain = client.responses.input_tokens.count(model=VISION, input=QUESTION)
        assert IMAGE_TOKENS <= counted.input_tokens - plain.input_tokens <= IMAGE_TOKENS + 2


def test_a_model_that_cannot_see_refuses_images_with_a_400_naming_it(client):
    text_assistant = client.beta.assistants.create(model=MODEL)
    image = client.files.create(file=("red.png", png((255, 0, 0))), purpose="vision")
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": image.id}}]}]
    )
    with api_error(openai.BadRequestError, 400, param="model", message="cannot see images"):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=text_assistant.id)
    with api_error(openai.BadRequestError, 400, param="model", message="cannot see images"):
        client.beta.threads.create_and_run(
            assistant_id=text_assistant.id,
            thread={
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": data_url(png((1, 2, 3)))}}],
                    }
                ]
            },
        )
    assert client.beta.threads.runs.list(thread.id).data == []  # nothing was queued
    with api_error(openai.BadRequestError, 400, param="model", message="cannot see images"):
        client.responses.create(
            model=MODEL,
            input=[{"role": "user", "content": [{"type": "input_image", "file_id": image.id}]}],
        )
    # the same thread on a model that sees: it runs
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=text_assistant.id, model=VISION, max_completion_tokens=4
    )
    assert ended(run), run.last_error


def test_bad_images_are_400s_where_they_arrive(client):
    thread = client.beta.threads.create()
    cases = [
        ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==", "corrupt or truncated"),
        ("data:image/png;base64,@@@", "base64"),
        (data_url(declared_png(40000, 40000)), "pixels"),
        ("data:text/plain;base64," + base64.b64encode(b"hello").decode(), "data:image/..."),
    ]
    for url, says in cases:
        with api_error(openai.BadRequestError, 400, param="content[1].image_url.url", message=says):
            client.beta.threads.messages.create(
                thread.id,
                role="user",
                content=[{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}],
            )
    with api_error(openai.BadRequestError, 400, param="file", message="not a PNG, JPEG, GIF or WebP"):
        client.files.create(file=("fake.png", b"\x89PNG not really"), purpose="vision")
    with api_error(openai.BadRequestError, 400, param="file", message="pixels"):
        client.files.create(file=("bomb.png", declared_png(50000, 50000)), purpose="vision")
    text_file = client.files.create(file=("notes.txt", b"some notes"), purpose="assistants")
    with api_error(
        openai.BadRequestError,
        400,
        param="content[0].image_file.file_id",
        message="not a PNG, JPEG, GIF or WebP",
    ):
        client.beta.threads.messages.create(
            thread.id, role="user", content=[{"type": "image_file", "image_file": {"file_id": text_file.id}}]
        )
    assert client.beta.threads.messages.list(thread.id).data == []  # nothing half-written
    with api_error(openai.BadRequestError, 400, param="input[0].content[0].image_url", message="not a PNG"):
        client.responses.create(
            model=VISION,
            input=[
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}],
                }
            ],
        )


def test_remote_image_urls_are_fetched_by_the_run_from_allowed_hosts_only(client, assistant, host):
    before = len(host.requests)
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image_url", "image_url": {"url": host.url("/green.png")}},
                ],
            }
        ]
    )
    assert len(host.requests) == before  # nothing is fetched when the message is made
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant, max_completion_tokens=6
    )
    assert ended(run), run.last_error
    assert host.requests[before:] == ["/green.png"] and run.usage.prompt_tokens >= IMAGE_TOKENS
    _, refused = run_on(
        client,
        assistant,
        [{"type": "image_url", "image_url": {"url": f"http://localhost:{host.port}/x.png"}}],
    )
    assert refused.status == "failed" and refused.last_error.code == "invalid_prompt"
    assert "not in the list of hosts" in refused.last_error.message
    _, redirected = run_on(
        client, assistant, [{"type": "image_url", "image_url": {"url": host.url("/away.png")}}]
    )
    assert redirected.status == "failed" and "localhost" in redirected.last_error.message


@pytest.fixture(scope="module")
def remote(tmp_path_factory, vision_files):
    """A remote llama.cpp server with the projector (`assistd engine --mmproj`), one without, and an
    assistd that names both by url; image URL fetching is off (the default)."""
    model, mmproj = vision_files
    base = tmp_path_factory.mktemp("vision-remote")
    seeing = EngineProcess(base / "seeing", parallel=1, n_ctx=1024, model=model, mmproj=mmproj)
    blind = EngineProcess(base / "blind", parallel=1, n_ctx=1024)
    models = base / "models.toml"
    models.write_text(
        f'[[models]]\nname = "remote-vision"\nurl = "{seeing.url}"\n\n'
        f'[[models]]\nname = "remote-text"\nurl = "{blind.url}"\n'
    )
    proc = ServerProcess(base / "data", args=["--models-file", str(models), "--kernel-pool-size", "0"])
    yield openai.OpenAI(base_url=f"{proc.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
    proc.stop()
    seeing.stop()
    blind.stop()


def test_a_remote_engine_says_from_its_props_whether_it_sees(remote):
    content = [
        {"type": "text", "text": QUESTION},
        {"type": "image_url", "image_url": {"url": data_url(png((9, 9, 9)))}},
    ]
    seeing = remote.beta.assistants.create(model="remote-vision")
    thread = remote.beta.threads.create(messages=[{"role": "user", "content": content}])
    run = remote.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=seeing.id, max_completion_tokens=4
    )
    assert ended(run), run.last_error
    assert run.usage.prompt_tokens >= IMAGE_TOKENS
    assert remote.models.retrieve("remote-vision").model_extra.get("capabilities") == {"vision": True}
    blind = remote.beta.assistants.create(model="remote-text")
    thread = remote.beta.threads.create(messages=[{"role": "user", "content": content}])
    run = remote.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=blind.id)
    assert (
        run.status == "failed" and run.last_error.code == "invalid_prompt"
    )  # known once its engine answered
    assert "'remote-text' cannot see images" in run.last_error.message
    with api_error(openai.BadRequestError, 400, param="model"):  # now it is known: refused at creation
        remote.beta.threads.runs.create(thread_id=thread.id, assistant_id=blind.id)
    url = [{"type": "image_url", "image_url": {"url": f"http://127.0.0.1:{free_port()}/cat.png"}}]
    thread = remote.beta.threads.create(messages=[{"role": "user", "content": url}])
    run = remote.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=seeing.id)
    assert run.status == "failed" and "Fetching image URLs is off" in run.last_error.message


def test_the_drop_fallback_tells_the_model_an_image_was_left_out(tmp_path):
    proc = ServerProcess(tmp_path / "data", args=["--kernel-pool-size", "0", "--vision-fallback", "drop"])
    try:
        client = openai.OpenAI(base_url=f"{proc.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
        assistant = client.beta.assistants.create(model=MODEL, temperature=0)
        image = [{"type": "image_url", "image_url": {"url": data_url(png((5, 5, 5)))}}]
        _, with_image = run_on(client, assistant.id, [{"type": "text", "text": QUESTION}, *image])
        _, without = run_on(client, assistant.id, QUESTION)
        assert ended(with_image), with_image.last_error
        # the note stands where the image was: a few words, not the image's base64
        assert 5 <= with_image.usage.prompt_tokens - without.usage.prompt_tokens <= 30
    finally:
        proc.stop()


def test_an_image_too_large_a_deleted_image_and_one_in_a_system_message(client, assistant):
    thread = client.beta.threads.create()
    big = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\0" * (MAX_BYTES + 10)).decode()
    with api_error(openai.BadRequestError, 400, param="content[0].image_url.url", message="larger than"):
        client.beta.threads.messages.create(
            thread.id, role="user", content=[{"type": "image_url", "image_url": {"url": big}}]
        )
    with api_error(openai.BadRequestError, 400, param="file", message="larger than"):
        client.files.create(file=("big.png", b"\x89PNG" + b"\0" * (MAX_BYTES + 10)), purpose="vision")
    image = client.files.create(file=("gone.png", png((7, 7, 7))), purpose="vision")
    part = {"type": "image_file", "image_file": {"file_id": image.id}}
    thread = client.beta.threads.create(messages=[{"role": "user", "content": [part]}])
    client.files.delete(image.id)  # after the message: the run cannot read it, and says so
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant)
    assert run.status == "failed" and run.last_error.code == "invalid_prompt"
    assert f"'{image.id}' does not exist" in run.last_error.message
    # an image in a system message is not shown: the system prompt is text (and holds no reference)
    response = client.responses.create(
        model=VISION,
        input=[
            {
                "role": "developer",
                "content": [{"type": "input_image", "image_url": data_url(png((1, 1, 1)))}],
            },
            {"role": "user", "content": QUESTION},
        ],
        max_output_tokens=16,
        temperature=0,
    )
    plain = client.responses.create(model=VISION, input=QUESTION, max_output_tokens=16, temperature=0)
    assert ended(response), response.error
    assert response.usage.input_tokens == plain.usage.input_tokens
