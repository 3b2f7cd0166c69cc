"""Containers and their files through the official SDK against the real server: shapes as openai.types
has them, paging, files uploaded, copied, read and deleted, expiry, project isolation, bad input.

Code runs in a container through Responses' code_interpreter tool; the service's run_code is tested with
real kernels in tests/unit/test_container_code.py."""

from __future__ import annotations

import sqlite3

import openai
import pytest
from openai.types import ContainerCreateResponse, ContainerListResponse, ContainerRetrieveResponse
from openai.types.containers import FileCreateResponse, FileListResponse, FileRetrieveResponse

from tests.support import assert_shape, raw_json

CSV = b"a,b\n1,2\n"
EXPIRES = {"anchor": "last_active_at", "minutes": 5}


@pytest.fixture(scope="module")
def uploaded(client):
    return client.files.create(file=("data.csv", CSV), purpose="assistants")


def status_and_error(call) -> tuple[int, dict]:
    try:
        call()
    except openai.APIStatusError as exc:
        return exc.status_code, exc.body
    raise AssertionError("the call succeeded")


def test_create_retrieve_list_delete(client):
    made = raw_json(
        client.containers.with_raw_response.create(name="crud", expires_after=EXPIRES, memory_limit="4g")
    )
    assert_shape(made, ContainerCreateResponse)
    assert made["id"].startswith("cntr_") and made["object"] == "container" and made["status"] == "running"
    assert made["expires_after"] == EXPIRES and made["memory_limit"] == "4g"
    assert made["network_policy"] == {"type": "disabled"} and made["name"] == "crud"
    assert abs(made["last_active_at"] - made["created_at"]) <= 2
    got = raw_json(client.containers.with_raw_response.retrieve(made["id"]))
    assert_shape(got, ContainerRetrieveResponse)
    assert got == made
    default = client.containers.create(name="defaults")
    assert default.expires_after.minutes == 20 and default.expires_after.anchor == "last_active_at"
    page = raw_json(client.containers.with_raw_response.list(limit=2))
    for item in page["data"]:
        assert_shape(item, ContainerListResponse)
    assert [c["id"] for c in page["data"]] == [default.id, made["id"]]  # newest first
    assert page["has_more"] in (True, False) and page["object"] == "list"
    older = client.containers.list(after=default.id, limit=1).data
    assert [c.id for c in older] == [made["id"]]
    ascending = [c.id for c in client.containers.list(order="asc", limit=100).data]
    assert ascending.index(made["id"]) < ascending.index(default.id)
    assert [c.id for c in client.containers.list(name="crud").data] == [made["id"]]
    deleted = client.containers.with_raw_response.delete(made["id"])
    assert raw_json(deleted) == {"id": made["id"], "object": "container.deleted", "deleted": True}
    status, body = status_and_error(lambda: client.containers.retrieve(made["id"]))
    assert status == 404 and body["param"] == "container_id"
    assert made["id"] not in [c.id for c in client.containers.list(limit=100).data]


def test_files_upload_copy_content_delete(client, uploaded):
    container = client.containers.create(name="files", file_ids=[uploaded.id])
    (copied,) = client.containers.files.list(container.id).data
    assert copied.path == "/mnt/data/data.csv" and copied.source == "user" and copied.bytes == len(CSV)
    assert copied.id.startswith("cfile_") and copied.container_id == container.id
    made = raw_json(client.containers.files.with_raw_response.create(container.id, file=("notes.txt", b"hi")))
    assert_shape(made, FileCreateResponse)
    assert made["object"] == "container.file" and made["path"] == "/mnt/data/notes.txt"
    assert made["source"] == "user" and made["bytes"] == 2
    by_id = client.containers.files.create(container.id, file_id=uploaded.id)  # the JSON form
    assert by_id.path == "/mnt/data/data.csv" and by_id.id != copied.id  # it replaces the copy there
    got = raw_json(client.containers.files.with_raw_response.retrieve(made["id"], container_id=container.id))
    assert_shape(got, FileRetrieveResponse)
    assert got == made
    body = client.containers.files.content.retrieve(made["id"], container_id=container.id)
    assert body.read() == b"hi"
    assert client.containers.files.content.retrieve(by_id.id, container_id=container.id).read() == CSV
    page = raw_json(client.containers.files.with_raw_response.list(container.id, limit=1))
    assert_shape(page["data"][0], FileListResponse)
    assert page["data"][0]["id"] == by_id.id and page["has_more"] is True  # newest first
    rest = client.containers.files.list(container.id, after=by_id.id).data
    assert [f.id for f in rest] == [made["id"]]
    deleted = raw_json(
        client.containers.files.with_raw_response.delete(made["id"], container_id=container.id)
    )
    assert deleted == {"id": made["id"], "object": "container.file.deleted", "deleted": True}
    status, error = status_and_error(
        lambda: client.containers.files.retrieve(made["id"], container_id=container.id)
    )
    assert status == 404 and error["param"] == "file_id"
    assert [f.id for f in client.containers.files.list(container.id).data] == [by_id.id]


def test_projects_see_only_their_containers(client, client_b, uploaded):
    mine = client.containers.create(name="isolated")
    file = client.containers.files.create(mine.id, file=("secret.txt", b"s"))
    calls = [
        lambda: client_b.containers.retrieve(mine.id),
        lambda: client_b.containers.delete(mine.id),
        lambda: client_b.containers.files.list(mine.id),
        lambda: client_b.containers.files.create(mine.id, file=("x.txt", b"x")),
        lambda: client_b.containers.files.retrieve(file.id, container_id=mine.id),
        lambda: client_b.containers.files.content.retrieve(file.id, container_id=mine.id),
        lambda: client_b.containers.files.delete(file.id, container_id=mine.id),
    ]
    for call in calls:
        assert status_and_error(call)[0] == 404
    assert mine.id not in [c.id for c in client_b.containers.list(limit=100).data]
    status, error = status_and_error(lambda: client_b.containers.create(name="x", file_ids=[uploaded.id]))
    assert status == 400 and error["param"] == "file_ids[0]"  # another project's file
    assert client.containers.files.retrieve(file.id, container_id=mine.id).id == file.id  # all still there


def test_a_file_of_another_container_is_not_found(client):
    one, two = client.containers.create(name="one"), client.containers.create(name="two")
    file = client.containers.files.create(one.id, file=("a.txt", b"a"))
    status, error = status_and_error(lambda: client.containers.files.retrieve(file.id, container_id=two.id))
    assert status == 404 and error["param"] == "file_id"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x", "expires_after": {"anchor": "last_active_at", "minutes": 0}}, "expires_after.minutes"),
        ({"name": "x", "expires_after": {"anchor": "created_at", "minutes": 5}}, "expires_after.anchor"),
        (
            {"name": "x", "expires_after": {"anchor": "last_active_at", "minutes": "5"}},
            "expires_after.minutes",
        ),
        ({"name": "x", "expires_after": {"anchor": "last_active_at"}}, "expires_after.minutes"),
        ({"name": "x", "file_ids": ["file-nope"]}, "file_ids[0]"),
        ({"name": "x", "memory_limit": "2g"}, "memory_limit"),
        (
            {"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": ["a.b"]}},
            "network_policy.type",
        ),
    ],
)
def test_bad_create_is_a_400_naming_the_param(client, body, param):
    status, error = status_and_error(lambda: client.post("/containers", body=body, cast_to=object))
    assert status == 400 and error["param"] == param, error


def test_unknown_containers_and_files_are_404_naming_the_param(client):
    container = client.containers.create(name="known")
    for call, param in [
        (lambda: client.containers.retrieve("cntr_nope"), "container_id"),
        (lambda: client.containers.delete("cntr_nope"), "container_id"),
        (lambda: client.containers.files.list("cntr_nope"), "container_id"),
        (lambda: client.containers.files.create("cntr_nope", file=("a.txt", b"a")), "container_id"),
        (lambda: client.containers.files.retrieve("cfile_nope", container_id=container.id), "file_id"),
        (lambda: client.containers.files.delete("cfile_nope", container_id=container.id), "file_id"),
    ]:
        status, error = status_and_error(call)
        assert status == 404 and error["param"] == param, error
    status, error = status_and_error(
        lambda: client.containers.files.create(container.id, file_id="file-nope")
    )
    assert status == 400 and error["param"] == "file_id"
    status, error = status_and_error(
        lambda: client.post(f"/containers/{container.id}/files", body={}, cast_to=object)
    )
    assert status == 400 and error["param"] == "file_id"
    status, error = status_and_error(lambda: client.containers.list(limit=0))
    assert status == 400 and error["param"] == "limit"


def test_an_idle_container_expires_with_its_files(server, client):
    container = client.containers.create(
        name="short", expires_after={"anchor": "last_active_at", "minutes": 1}
    )
    file = client.containers.files.create(container.id, file=("a.txt", b"a"))
    # the database's clock as a minute and a second later: the container's last activity moves back
    with sqlite3.connect(server.data_dir / "assistd.db", timeout=30) as db:
        db.execute("UPDATE containers SET last_active_at = last_active_at - 61 WHERE id = ?", (container.id,))
    expired = client.containers.retrieve(container.id)
    assert expired.status == "expired"
    assert [c.status for c in client.containers.list(limit=100).data if c.id == container.id] == ["expired"]
    assert client.containers.files.list(container.id).data == []  # its files are gone
    assert not (server.data_dir / "files" / file.id[-2:] / file.id).exists()
    assert (
        status_and_error(lambda: client.containers.files.retrieve(file.id, container_id=container.id))[0]
        == 404
    )
    status, error = status_and_error(
        lambda: client.containers.files.create(container.id, file=("b.txt", b"b"))
    )
    assert status == 400 and error["code"] == "container_expired" and error["param"] == "container_id"
    client.containers.delete(container.id)  # an expired container can still be deleted
    assert status_and_error(lambda: client.containers.retrieve(container.id))[0] == 404
