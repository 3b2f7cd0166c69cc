"""Files: multipart upload, list (purpose filter, pagination), retrieve, delete (blob gone), content,
the size limit."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types import FileDeleted, FileObject

from tests.contract.helpers import api_error, check_error_body, shaped, shaped_list
from tests.support import KEY_A, ServerProcess, png_bytes

LIMIT = 1000


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server of its own (exact file counts) whose uploads are limited to 1000 bytes."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("small-uploads"),
        args=["--max-upload-bytes", str(LIMIT), "--kernel-pool-size", "0"],
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def small(small_server):
    return openai.OpenAI(base_url=f"{small_server.base_url}/v1", api_key=KEY_A, max_retries=0)


def blob_path(server, file_id: str):
    return server.data_dir / "files" / file_id[-2:] / file_id


def test_upload_retrieve_content_delete(client, server):
    data = bytes(range(256)) * 40  # binary, 10 KB
    file = shaped(
        client.files.with_raw_response.create(file=("table.bin", data), purpose="assistants"), FileObject
    )
    assert file.id.startswith("file-") and file.object == "file"
    assert (file.bytes, file.filename, file.purpose, file.status) == (
        len(data),
        "table.bin",
        "assistants",
        "processed",
    )
    assert file.expires_at is None
    assert blob_path(server, file.id).read_bytes() == data
    assert not list(blob_path(server, file.id).parent.glob("*.part"))

    assert shaped(client.files.with_raw_response.retrieve(file.id), FileObject) == file
    content = client.files.with_raw_response.content(file.id)
    assert content.http_response.status_code == 200
    assert content.http_response.content == data
    assert client.files.content(file.id).read() == data

    deleted = shaped(client.files.with_raw_response.delete(file.id), FileDeleted)
    assert (deleted.id, deleted.object, deleted.deleted) == (file.id, "file", True)
    assert not blob_path(server, file.id).exists()
    with api_error(openai.NotFoundError, 404, message=f"No file found with id '{file.id}'."):
        client.files.retrieve(file.id)
    with api_error(openai.NotFoundError, 404):
        client.files.content(file.id)
    with api_error(openai.NotFoundError, 404):
        client.files.delete(file.id)


def test_upload_from_path_and_expiry(client, tmp_path):
    path = tmp_path / "report.md"
    path.write_text("# Report\n")
    file = client.files.create(file=path, purpose="user_data")
    assert (file.filename, file.bytes, file.purpose) == ("report.md", 9, "user_data")
    expiring = shaped(
        client.files.with_raw_response.create(
            file=("batch.jsonl", b"{}\n"),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 3600},
        ),
        FileObject,
    )
    assert expiring.expires_at == expiring.created_at + 3600
    with api_error(openai.BadRequestError, 400, param="expires_after.seconds"):
        client.files.create(
            file=("b.jsonl", b"{}"), purpose="batch", expires_after={"anchor": "created_at", "seconds": 5}
        )


def test_upload_validation(client):
    with api_error(openai.BadRequestError, 400, param="purpose", message="'nope'"):
        client.files.create(file=("a.txt", b"x"), purpose="nope")
    with httpx.Client(base_url=str(client.base_url), headers={"Authorization": f"Bearer {KEY_A}"}) as http:
        check_error_body(
            http.post("files", data={"purpose": "assistants"}, files={"x": ("a", b"1")}), 400, param="file"
        )
        check_error_body(http.post("files", files={"file": ("a.txt", b"1")}), 400, param="purpose")
        check_error_body(http.post("files", json={"purpose": "assistants"}), 400)


async def test_async_files(aclient):
    file = shaped(
        await aclient.files.with_raw_response.create(file=("a.txt", b"async"), purpose="assistants"),
        FileObject,
    )
    assert shaped(await aclient.files.with_raw_response.retrieve(file.id), FileObject) == file
    assert (await aclient.files.content(file.id)).read() == b"async"
    shaped_list(await aclient.files.with_raw_response.list(purpose="assistants"), FileObject)
    seen = [f.id async for f in aclient.files.list(limit=2)]
    assert file.id in seen
    assert shaped(await aclient.files.with_raw_response.delete(file.id), FileDeleted).deleted


def test_list_purpose_filter_and_pagination(small, small_server):
    made = []
    for i in range(7):
        if i % 3 == 0:  # a file for `vision` must be an image
            made.append(small.files.create(file=(f"f{i}.png", png_bytes(i + 1, i + 1)), purpose="vision"))
        else:
            made.append(small.files.create(file=(f"f{i}.txt", b"x" * i), purpose="assistants"))
    ids = [f.id for f in made]
    page = shaped_list(small.files.with_raw_response.list(), FileObject)
    assert [f.id for f in page.data] == ids[::-1] and not page.has_more  # default limit holds them all
    vision = shaped_list(small.files.with_raw_response.list(purpose="vision"), FileObject)
    assert [f.id for f in vision.data] == [ids[6], ids[3], ids[0]]
    first = shaped_list(small.files.with_raw_response.list(limit=3, order="asc"), FileObject)
    assert [f.id for f in first.data] == ids[:3] and first.has_more
    assert [f.id for f in small.files.list(limit=3, order="asc")] == ids  # SDK auto-paging
    assert [f.id for f in small.files.list(limit=2, purpose="assistants")] == [ids[5], ids[4], ids[2], ids[1]]
    assert [f.id for f in small.files.list(limit=3, after=ids[4])] == ids[:4][::-1]
    with api_error(openai.BadRequestError, 400, param="limit"):
        small.files.list(limit=0)
    with api_error(openai.BadRequestError, 400, param="limit"):
        small.files.list(limit=10_001)
    with api_error(openai.BadRequestError, 400, param="order"):
        small.files.list(order="sideways")  # type: ignore[arg-type]


def test_size_limit(small, small_server):
    files_dir = small_server.data_dir / "files"
    before = {f.id for f in small.files.list()}
    exact = small.files.create(file=("max.bin", b"a" * LIMIT), purpose="assistants")
    assert exact.bytes == LIMIT
    for size in (LIMIT + 1, 50_000, 300_000):  # just over; within the multipart slack; far over
        with api_error(openai.BadRequestError, 400, param="file", message="too large"):
            small.files.create(file=("big.bin", b"b" * size), purpose="assistants")
    assert {f.id for f in small.files.list()} == before | {exact.id}
    stored = [p for p in files_dir.rglob("*") if p.is_file()]
    assert {p.name for p in stored} == before | {exact.id}  # no blob or .part left by the refused uploads
    assert small_server.proc.poll() is None


def test_size_limit_without_content_length(small, small_server):
    """A chunked upload (no Content-Length) is cut off while streaming, with the same 400."""
    before = {f.id for f in small.files.list()}
    boundary = "assistdboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body():
        yield head
        for _ in range(20):
            yield b"c" * 65536  # 1.3 MB in all: past the 1 MB + limit the server reads
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {
        "Authorization": f"Bearer {KEY_A}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    response = httpx.post(f"{small_server.base_url}/v1/files", content=body(), headers=headers)
    check_error_body(response, 400, param="file", message="too large")
    assert {f.id for f in small.files.list()} == before
    assert not [p for p in (small_server.data_dir / "files").rglob("*.part")]


def test_large_json_body_is_400(small_server):
    headers = {"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"}
    body = b'{"model": "x", "instructions": "' + b"i" * 1_200_000 + b'"}'
    response = httpx.post(f"{small_server.base_url}/v1/assistants", content=body, headers=headers)
    check_error_body(response, 400, message="too large")


def test_filename_is_a_base_name_and_unicode_survives(client):
    evil = client.files.create(file=("../../etc/evil.txt", b"x"), purpose="assistants")
    assert evil.filename == "evil.txt"
    windows = client.files.create(file=("C:\\Users\\me\\doc.txt", b"x"), purpose="assistants")
    assert windows.filename == "doc.txt"
    accented = client.files.create(file=("résumé ✓.txt", b"x"), purpose="assistants")
    assert client.files.retrieve(accented.id).filename == "résumé ✓.txt"
    disposition = client.files.with_raw_response.content(accented.id).http_response.headers[
        "content-disposition"
    ]
    assert "r%C3%A9sum%C3%A9" in disposition


def test_lost_blob_is_404_not_500(client, server):
    file = client.files.create(file=("gone.txt", b"soon gone"), purpose="assistants")
    blob_path(server, file.id).unlink()
    with api_error(openai.NotFoundError, 404, message="missing"):
        client.files.content(file.id)
    assert client.files.delete(file.id).deleted
