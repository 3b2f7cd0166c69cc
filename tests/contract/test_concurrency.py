"""Runs generated concurrently: a server whose model is served by llama.cpp's server engine with 8 slots,
started by the test as its own process (`assistd engine --parallel 8`) and registered by `url`.

Overlap is checked on the engine's own report (GET /slots: more than one slot `is_processing` while the
runs stream), a mechanism check, never a timing one."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.contract import test_runs as runs
from tests.contract.helpers import assert_ended
from tests.remote_engine import EngineProcess, models_file, remote_server
from tests.support import KEY_A, wait_until

pytestmark = [pytest.mark.contract, pytest.mark.model]

NAME = "smol-parallel"
SLOTS = 8
DEADLINE = 300.0
QUESTIONS = [
    "What is the capital of France?",
    "Name a color.",
    "What is two plus two?",
    "Say hello.",
    "Name a fruit.",
    "What is the opposite of hot?",
    "Name an animal.",
    "What day comes after Monday?",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    proc = EngineProcess(tmp_path_factory.mktemp("parallel-engine"), parallel=SLOTS)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    base = tmp_path_factory.mktemp("parallel-server")
    proc = remote_server(base / "server", models_file(base / "models.toml", NAME, engine.url))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=DEADLINE)


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(
        model=NAME, name="parallel", instructions="You are a helpful assistant. Answer in one short sentence."
    )


class SlotWatch:
    """Polls the engine's /slots from a thread while a block runs; keeps every processing slot it saw."""

    def __init__(self, engine: EngineProcess) -> None:
        self.engine = engine
        self.most_busy = 0
        self.seen: list[list[dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="slot-watch", daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                busy = [slot for slot in self.engine.slots() if slot.get("is_processing")]
            except httpx.HTTPError:
                continue
            self.seen.append(busy)
            self.most_busy = max(self.most_busy, len(busy))
            self._stop.wait(0.01)

    def __enter__(self) -> SlotWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def streamed_run(client: openai.OpenAI, assistant_id: str, question: str) -> dict:
    """One streamed run on its own thread: every event name, the text deltas, the completed message."""
    thread = client.beta.threads.create(messages=[{"role": "user", "content": question}])
    names: list[str] = []
    deltas: list[str] = []
    final_text = None
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant_id, max_completion_tokens=128
    ) as stream:
        for event in stream:
            names.append(event.event)
            if event.event == "thread.message.delta":
                for part in event.data.delta.content or []:
                    if part.type == "text" and part.text and part.text.value:
                        deltas.append(part.text.value)
            elif event.event == "thread.message.completed":
                final_text = event.data.content[0].text.value
    run = stream.get_final_run()
    stored = client.beta.threads.messages.list(thread.id, run_id=run.id).data
    return {
        "run": run,
        "names": names,
        "text": "".join(deltas),
        "final_text": final_text,
        "stored_text": stored[0].content[0].text.value if stored else None,
        "thread": threading.current_thread().name,
    }


def test_eight_concurrent_streamed_runs_complete_whole_and_overlap_on_the_engine(engine, client, assistant):
    with SlotWatch(engine) as watch, ThreadPoolExecutor(SLOTS, thread_name_prefix="sdk") as pool:
        results = list(pool.map(lambda q: streamed_run(client, assistant.id, q), QUESTIONS))
    assert len({r["thread"] for r in results}) == SLOTS  # each run streamed on a thread of its own
    for result in results:
        run, names = result["run"], result["names"]
        assert run.status == "completed", (run.status, run.last_error, names)
        # created -> queued -> in_progress -> step/message opened -> deltas -> message/step/run completed
        assert names[: len(runs.TEXT_EVENTS)] == runs.TEXT_EVENTS, names
        assert names[-len(runs.TEXT_TAIL) :] == runs.TEXT_TAIL, names
        middle = names[len(runs.TEXT_EVENTS) : -len(runs.TEXT_TAIL)]
        assert middle and set(middle) == {"thread.message.delta"}, names
        assert result["text"].strip() and result["text"] == result["final_text"] == result["stored_text"]
        assert run.usage.completion_tokens > 0
    assert len({r["run"].id for r in results}) == SLOTS
    # The engine generated for more than one run at once (continuous batching over its slots).
    assert watch.most_busy > 1, f"the engine never reported two busy slots ({len(watch.seen)} polls)"


class TaskWatch:
    """Follows one engine task in /slots from a thread: how many tokens it had decoded when last seen
    processing, and when its slot was given up."""

    def __init__(self, engine: EngineProcess, task: int) -> None:
        self.engine = engine
        self.task = task
        self.decoded = 0
        self.freed = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="task-watch", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self.freed.is_set():
            try:
                slots = self.engine.slots()
            except httpx.HTTPError:
                continue
            mine = [s for s in slots if s.get("id_task") == self.task and s.get("is_processing")]
            if not mine:
                self.freed.set()
                return
            self.decoded = max(self.decoded, decoded(mine[0]))
            time.sleep(0.01)


def decoded(slot: dict) -> int:
    """Tokens a processing slot has generated for its task (`next_token` is a list in recent llama.cpp)."""
    nxt = slot.get("next_token") or {}
    if isinstance(nxt, list):
        nxt = nxt[0] if nxt else {}
    return int(nxt.get("n_decoded") or 0)


def test_cancel_during_concurrent_generation_stops_only_its_run_and_frees_its_slot(engine, client, assistant):
    story = "Write a very long story about the history of the sea, with many chapters."
    # The victim's token budget tells its slot apart in /slots (the engine's n_predict).
    victim_budget, other_budget = 1000, 200

    def start(budget: int):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": story}])
        return client.beta.threads.runs.create(
            thread_id=thread.id,
            assistant_id=assistant.id,
            instructions="Write at great length.",
            temperature=1.0,
            max_completion_tokens=budget,
        )

    with ThreadPoolExecutor(4) as pool:
        started = list(pool.map(start, [victim_budget, other_budget, other_budget, other_budget]))
    victim, others = started[0], started[1:]

    def victim_beside_another() -> dict | None:
        busy = [s for s in engine.slots() if s.get("is_processing")]
        mine = [s for s in busy if (s.get("params") or {}).get("n_predict") == victim_budget]
        return mine[0] if mine and len(busy) > 1 and decoded(mine[0]) > 0 else None

    found: list[dict] = []
    wait_until(
        lambda: (slot := victim_beside_another()) is not None and not found.append(slot),
        "the victim to generate beside another run",
        timeout=DEADLINE,
    )
    watch = TaskWatch(engine, found[0]["id_task"])
    client.beta.threads.runs.cancel(victim.id, thread_id=victim.thread_id)
    at_cancel = watch.decoded or decoded(found[0])
    cancelled = client.beta.threads.runs.poll(victim.id, thread_id=victim.thread_id, poll_interval_ms=50)
    assert cancelled.status == "cancelled", cancelled.last_error
    message = client.beta.threads.messages.list(victim.thread_id, run_id=victim.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "run_cancelled"
    # The engine stops generating for the cancelled run (it sees the stream closed) and gives up its slot
    # long before the run's budget: a token bound, far from the budget, not a time limit.
    assert watch.freed.wait(DEADLINE), "the engine kept the cancelled run's slot"
    assert watch.decoded - at_cancel < victim_budget // 2, (at_cancel, watch.decoded)
    for run in others:
        done = client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=100)
        # Ended by their own generation (end of turn or their token cap), not by the other run's cancel.
        assert_ended(done)
        assert done.cancelled_at is None and done.usage.completion_tokens > 0
        text = client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0].content[0].text.value
        assert text.strip()
    wait_until(lambda: engine.busy() == 0, "every slot to be free again", timeout=DEADLINE)
