"""The gate in front of each model (llm/registry.py): up to `slots` generations at once, the others let in
in arrival order, a waiter that gives up leaves the queue without holding up those behind it; and the
registry that hands one loaded backend to as many threads as it has slots.

Every wait here is on a state the gate reports (`busy`, `waiting`) or on an event a thread sets, with a
generous deadline: nothing depends on how fast the machine is."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from assistd.config import ModelEntry
from assistd.llm.catalog import ModelCatalog
from assistd.llm.fake import ScriptedBackend
from assistd.llm.registry import FairGate, LockAbandoned, ModelRegistry
from tests.support import wait_until

DEADLINE = 30.0


class Holder:
    """A thread that takes a place at the gate and keeps it until released."""

    def __init__(self, gate: FairGate, name: object, admitted: list | None = None, abandon=None) -> None:
        self.gate = gate
        self.name = name
        self.admitted = admitted if admitted is not None else []
        self.inside = threading.Event()
        self.release = threading.Event()
        self.abandoned = threading.Event()
        self._abandon = abandon
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.gate.hold(self._abandon):
                self.admitted.append(self.name)
                self.inside.set()
                self.release.wait(DEADLINE)
        except LockAbandoned:
            self.abandoned.set()

    def start(self) -> Holder:
        self.thread.start()
        return self

    def finish(self) -> None:
        self.release.set()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()


def queue_behind(gate: FairGate, names: list, admitted: list, abandon=None) -> list[Holder]:
    """Starts one waiter per name, each only once the one before it is in the queue (arrival order)."""
    waiters = []
    for name in names:
        before = gate.waiting
        waiters.append(Holder(gate, name, admitted, abandon).start())
        wait_until(lambda before=before: gate.waiting == before + 1, f"{name} to queue")
    return waiters


def test_n_holders_at_once_and_the_next_one_waits():
    gate = FairGate(3)
    holders = [Holder(gate, i).start() for i in range(3)]
    for holder in holders:
        assert holder.inside.wait(DEADLINE)
    assert gate.busy == 3 and gate.waiting == 0
    (fourth,) = queue_behind(gate, ["fourth"], [])
    assert not fourth.inside.is_set() and gate.busy == 3  # queued: all slots are taken
    holders[1].finish()  # any holder leaving lets the next one in
    assert fourth.inside.wait(DEADLINE)
    assert gate.busy == 3 and gate.waiting == 0
    for holder in [holders[0], holders[2], fourth]:
        holder.finish()
    assert gate.busy == 0


def test_beyond_the_slots_waiters_are_let_in_in_arrival_order():
    gate = FairGate(2)
    admitted: list = []
    first = [Holder(gate, f"h{i}", admitted).start() for i in range(2)]
    for holder in first:
        assert holder.inside.wait(DEADLINE)
    waiters = queue_behind(gate, list(range(5)), admitted)
    # Each freed slot admits exactly one waiter: the one that has waited longest.
    inside = first
    for i, waiter in enumerate(waiters):
        inside.pop(0).finish()
        assert waiter.inside.wait(DEADLINE)
        assert admitted[2:] == list(range(i + 1))
        assert gate.busy == 2 and gate.waiting == 4 - i
        inside.append(waiter)
    for holder in inside:
        holder.finish()
    assert admitted == ["h0", "h1", 0, 1, 2, 3, 4] and gate.busy == 0


def test_a_waiter_that_abandons_gives_up_its_place_without_blocking_those_behind():
    gate = FairGate(1)
    admitted: list = []
    holder = Holder(gate, "holder", admitted).start()
    assert holder.inside.wait(DEADLINE)
    give_up = threading.Event()
    (quitter,) = queue_behind(gate, ["quitter"], admitted, abandon=give_up.is_set)
    behind = queue_behind(gate, ["second", "third"], admitted)
    assert gate.waiting == 3
    give_up.set()  # e.g. its run was cancelled while queued
    assert quitter.abandoned.wait(DEADLINE)
    wait_until(lambda: gate.waiting == 2, "the quitter to leave the queue")
    assert gate.busy == 1 and not quitter.inside.is_set()
    holder.finish()
    assert behind[0].inside.wait(DEADLINE)  # the one behind the quitter is next
    behind[0].finish()
    assert behind[1].inside.wait(DEADLINE)
    behind[1].finish()
    quitter.thread.join(DEADLINE)
    assert admitted == ["holder", "second", "third"] and gate.busy == 0 and gate.waiting == 0


def test_the_head_of_the_queue_abandoning_lets_the_next_in_when_a_slot_frees():
    gate = FairGate(2)
    admitted: list = []
    holders = [Holder(gate, i, admitted).start() for i in range(2)]
    for holder in holders:
        assert holder.inside.wait(DEADLINE)
    give_up = threading.Event()
    (head,) = queue_behind(gate, ["head"], admitted, abandon=give_up.is_set)
    (next_one,) = queue_behind(gate, ["next"], admitted)
    give_up.set()
    assert head.abandoned.wait(DEADLINE)
    holders[0].finish()
    assert next_one.inside.wait(DEADLINE)
    for holder in [holders[1], next_one]:
        holder.finish()
    assert admitted == [0, 1, "next"] and gate.busy == 0


def test_a_gate_has_at_least_one_slot():
    gate = FairGate(0)
    holder = Holder(gate, "only").start()
    assert holder.inside.wait(DEADLINE)
    assert gate.slots == 1 and gate.busy == 1
    holder.finish()


def registry_of(backend_factory: Callable[[str], object]) -> ModelRegistry:
    entry = ModelEntry(name="fake", url="http://127.0.0.1:9")
    return ModelRegistry(ModelCatalog([entry], "fake", 0), backend_factory)  # type: ignore[arg-type]


def test_registry_use_lends_one_backend_to_as_many_threads_as_it_has_slots():
    backend = ScriptedBackend(["a", "b", "c", "d"])
    backend.slots = 3
    loads: list[str] = []

    def factory(name: str) -> ScriptedBackend:
        loads.append(name)
        return backend

    registry = registry_of(factory)
    got: list[object] = []
    lock = threading.Lock()
    release = threading.Event()
    entered = [threading.Event() for _ in range(4)]

    def run(i: int) -> None:
        with registry.use("fake") as lent:
            with lock:
                got.append(lent)
            entered[i].set()
            release.wait(DEADLINE)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(4)]
    for t in threads[:3]:
        t.start()
    for event in entered[:3]:
        assert event.wait(DEADLINE)
    gate = registry.gate("fake")
    assert gate is not None and gate.slots == 3 and gate.busy == 3
    threads[3].start()
    wait_until(lambda: gate.waiting == 1, "the fourth run to queue")
    assert not entered[3].is_set()
    release.set()
    assert entered[3].wait(DEADLINE)
    for t in threads:
        t.join(DEADLINE)
    assert loads == ["fake"]  # loaded once, shared by every run
    assert len(got) == 4 and all(lent is backend for lent in got)
    assert gate.busy == 0


def test_registry_use_abandon_leaves_the_queue():
    backend = ScriptedBackend()
    registry = registry_of(lambda _name: backend)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with registry.use("fake"):
            holding.set()
            release.wait(DEADLINE)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(DEADLINE)
    give_up = threading.Event()
    outcome: list[str] = []

    def wait_in_line() -> None:
        try:
            with registry.use("fake", abandon=give_up.is_set):
                outcome.append("admitted")
        except LockAbandoned:
            outcome.append("abandoned")

    waiter = threading.Thread(target=wait_in_line, daemon=True)
    waiter.start()
    wait_until(lambda: registry.gate("fake").waiting == 1, "the waiter to queue")
    give_up.set()
    waiter.join(DEADLINE)
    assert outcome == ["abandoned"] and registry.gate("fake").waiting == 0
    release.set()
    holder.join(DEADLINE)


def test_a_failed_load_is_tried_again_by_the_next_caller():
    backend = ScriptedBackend()
    attempts: list[int] = []

    def factory(_name: str) -> ScriptedBackend:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("engine not up yet")
        return backend

    registry = registry_of(factory)
    with pytest.raises(ConnectionError):
        registry.get("fake")
    with registry.use("fake") as lent:
        assert lent is backend
    assert len(attempts) == 2


def test_close_closes_every_loaded_backend_once():
    closed: list[str] = []

    class Closing(ScriptedBackend):
        def close(self) -> None:
            closed.append(self.name)

    registry = registry_of(lambda name: Closing(name=name))
    registry.get("fake")
    registry.close()
    registry.close()
    assert closed == ["fake"]
