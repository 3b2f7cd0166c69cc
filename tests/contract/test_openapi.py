"""The published OpenAPI schema tells the truth: schemathesis drives every operation it lists against a real
server, with the bodies, parameters and answers the schema declares (checks: no server error, status code and
response body as declared).

Bounded and deterministic: per operation, a few cases that fit the schema and a few that break it (wrong
types, values out of range, missing fields), derandomized, no shrinking. Path ids are those of real objects
(made below), so the cases reach the services instead of stopping at a 404, except for DELETE, whose cases
get generated ids so that the objects stay for the other operations. No case can start a model reply: a run
needs an `assistant_id`, and generated ones name nothing.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.support import DEFAULT_MODEL, KEY_A, ServerProcess

pytestmark = [pytest.mark.contract, pytest.mark.model]  # one real run, for its run and step ids

MAX_EXAMPLES = 4
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
AUTH = {"Authorization": f"Bearer {KEY_A}"}
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    report_multiple_bugs=False,
)


@pytest.fixture(scope="module")
def openapi_server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("openapi"), args=["--max-reply-tokens", "8"])
    yield proc
    proc.stop()


def _wait(http: httpx.Client, path: str, done: set[str]) -> dict[str, Any]:
    for _ in range(600):
        obj = http.get(path).json()
        if obj["status"] in done:
            return obj
        time.sleep(0.2)
    raise AssertionError(f"{path} still {obj['status']}")


@pytest.fixture(scope="module")
def known_ids(openapi_server) -> dict[str, str]:
    """One real object of each kind, named by the path parameter that takes its id."""
    with httpx.Client(base_url=f"{openapi_server.base_url}/v1", headers=AUTH, timeout=120) as http:
        upload = http.post(
            "/files",
            files={"file": ("notes.txt", b"Rome is the capital of Italy.\n")},
            data={"purpose": "assistants"},
        )
        file_id = upload.json()["id"]
        store = http.post("/vector_stores", json={"name": "notes", "file_ids": [file_id]}).json()
        _wait(http, f"/vector_stores/{store['id']}", {"completed"})
        batch = http.post(f"/vector_stores/{store['id']}/file_batches", json={"file_ids": [file_id]}).json()
        assistant = http.post("/assistants", json={"model": DEFAULT_MODEL, "name": "schema"}).json()
        thread = http.post("/threads", json={"messages": [{"role": "user", "content": "Say hi."}]}).json()
        message_id = http.get(f"/threads/{thread['id']}/messages").json()["data"][0]["id"]
        run = http.post(
            f"/threads/{thread['id']}/runs",
            json={"assistant_id": assistant["id"], "max_completion_tokens": 8},
        ).json()
        _wait(http, f"/threads/{thread['id']}/runs/{run['id']}", {"completed", "incomplete", "failed"})
        step_id = http.get(f"/threads/{thread['id']}/runs/{run['id']}/steps").json()["data"][0]["id"]
        conversation = http.post("/conversations", json={"items": [{"role": "user", "content": "Hi"}]}).json()
        item_id = http.get(f"/conversations/{conversation['id']}/items").json()["data"][0]["id"]
        container = http.post("/containers", json={"name": "schema"}).json()
        response = http.post(
            "/responses", json={"model": DEFAULT_MODEL, "input": "Hi", "max_output_tokens": 16}
        )
    return {
        "assistant_id": assistant["id"],
        "thread_id": thread["id"],
        "message_id": message_id,
        "run_id": run["id"],
        "step_id": step_id,
        "file_id": file_id,
        "vector_store_id": store["id"],
        "batch_id": batch["id"],
        "model_id": DEFAULT_MODEL,
        "conversation_id": conversation["id"],
        "item_id": item_id,
        "container_id": container["id"],
        "response_id": response.json()["id"],
    }


@pytest.fixture(scope="module")
def api_schema(openapi_server):
    """The schema as the server publishes it."""
    schema = schemathesis.openapi.from_url(f"{openapi_server.base_url}/schema/openapi.json")
    schema.config.update(request_timeout=120)
    return schema


def fuzz(operation: APIOperation, mode: GenerationMode, path_ids: dict[str, str], seen: set[int]) -> None:
    """MAX_EXAMPLES cases of one operation; raises the first failed check (hypothesis reports the case)."""
    strategy = operation.as_strategy(mode, path_parameters=path_ids, headers=AUTH)

    @SETTINGS
    @given(case=strategy)
    def check(case: Case) -> None:
        seen.add(case.call_and_validate(checks=CHECKS).status_code)

    check()


def test_every_operation_keeps_to_the_schema(api_schema, known_ids):
    failures: list[str] = []
    answered: dict[str, set[int]] = {}  # operation -> the statuses it answered
    for result in api_schema.get_all_operations():
        operation = result.ok()  # raises if the schema of an operation is invalid
        names = {p.name for p in operation.path_parameters}
        path_ids = (
            {} if operation.method.upper() == "DELETE" else {n: known_ids[n] for n in names & set(known_ids)}
        )
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, path_ids, answered.setdefault(operation.label, set()))
            except Unsatisfiable:
                continue  # nothing of this operation can break the schema (only ids in the path, say)
            except FailureGroup as group:  # the checks' failures of the first failing case
                found = "; ".join(f"{f.title}: {f.message[:300]}" for f in group.exceptions)
                failures.append(f"{operation.label} [{mode.value}]: {found}")
            except Exception as exc:  # a request that could not be made, say
                failures.append(f"{operation.label} [{mode.value}]: {exc!r}")
    assert len(answered) >= 45, f"only {len(answered)} operations in the schema"
    # Not vacuous: the key was accepted everywhere, and the real ids took most operations past a 404.
    assert not [op for op, statuses in answered.items() if 401 in statuses]
    succeeded = [op for op, statuses in answered.items() if 200 in statuses]
    assert len(succeeded) >= 30, f"only {len(succeeded)} operations ever answered 200: {sorted(succeeded)}"
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)
