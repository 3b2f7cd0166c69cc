"""Server-side tools in a run: what they work on (the tool resources, the vector stores, the search results
shown so far), the file_search set-up before the model's first turn (waiting for indexing, the automatic
search for models too small to call it), and executing the code_interpreter and file_search calls of a
tool_calls step. Function calls are not executed here: the client runs them."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from assistd.config import ModelEntry
from assistd.engine import citations
from assistd.engine.record import Recorder, zero_usage
from assistd.engine.reply import Call, new_call_id
from assistd.engine.stopping import begin, check
from assistd.engine.store import RunStore
from assistd.engine.tool_rules import has_tool
from assistd.engine.toolbox import Toolbox, file_search_settings, query_argument
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

INDEX_POLL_SECONDS = 0.2


@dataclass
class ToolContext:
    """What a run's server-side tools work on, gathered once per run."""

    entry: ModelEntry
    assistant_res: dict[str, Any]
    thread_res: dict[str, Any]
    store_ids: list[str]  # the vector stores file_search searches (none without file_search)
    sources: list[citations.Source] = field(default_factory=list)  # results shown so far, for citations


class ToolStep:
    def __init__(self, store: RunStore, toolbox: Toolbox, recorder: Recorder) -> None:
        self.store = store
        self.toolbox = toolbox
        self.recorder = recorder

    def prepare(self, run: RunRow, entry: ModelEntry, cancel: threading.Event) -> ToolContext:
        """The run's tool context; file_search waits for its files' indexing and, when the model does not
        write its own queries, searches once with the user's last message."""
        assistant_res, thread_res = self.store.tool_resources(run)
        has_search = has_tool(run, "file_search")
        store_ids = self.toolbox.store_ids(run, assistant_res, thread_res) if has_search else []
        context = ToolContext(entry, assistant_res, thread_res, store_ids)
        self._wait_for_indexing(run, store_ids, cancel)
        if store_ids and entry.file_search_query != "model" and run.tool_choice != "none":
            self._auto_search(run, context, cancel)
        return context

    def execute(
        self,
        run: RunRow,
        context: ToolContext,
        step: StepRow,
        records: list[dict[str, Any]],
        calls: list[Call],
        history: list[MessageRow],
        cancel: threading.Event,
    ) -> dict[str, Any]:
        """Runs the step's server-side calls, filling their records; returns the step's engine state (files
        the code wrote, whether it failed, the searches as the model will see them)."""
        state: dict[str, Any] = {"files": []}
        inputs: list[tuple[str, bytes]] | None = None
        for index, (record, call) in enumerate(zip(records, calls, strict=True)):
            check(run, cancel)
            if record["type"] == "code_interpreter":
                if inputs is None:
                    inputs = self.toolbox.input_files(run, context.assistant_res, context.thread_res, history)
                result = self.toolbox.run_code(run, record["code_interpreter"]["input"], inputs)
                record["code_interpreter"]["outputs"] = result.outputs
                state["files"] += result.files
                state["code_failed"] = state.get("code_failed", False) or result.error
                self.recorder.code_outputs(step, index, result.outputs)
            elif record["type"] == "file_search":
                query = query_argument(call.arguments)
                record["file_search"], rendered = self._search(run, context, query)
                state.setdefault("searches", {})[record["id"]] = {"query": query, "rendered": rendered}
        return state

    def _search(self, run: RunRow, context: ToolContext, query: str) -> tuple[dict[str, Any], str]:
        """Searches the run's stores; the results join the sources the final message cites."""
        max_results, threshold = file_search_settings(run, context.entry)
        details, found, rendered = self.toolbox.search(
            run, context.store_ids, query, max_results, threshold, len(context.sources)
        )
        context.sources += found
        return details, rendered

    def _wait_for_indexing(self, run: RunRow, store_ids: list[str], cancel: threading.Event) -> None:
        """As the hosted API does, a run starts answering once the files of its vector stores are indexed
        (a file attached a moment ago is otherwise invisible to the search)."""
        waited = False
        while store_ids and self.toolbox.pending_files(run, store_ids):
            check(run, cancel)
            time.sleep(INDEX_POLL_SECONDS)
            waited = True
        if waited:  # what the run read ahead may have changed meanwhile: its first turn reads it again
            self.store.drop(run.id)

    def _auto_search(self, run: RunRow, context: ToolContext, cancel: threading.Event) -> None:
        """For models too small to call file_search: search with the user's last message, once per run."""
        if any(
            s.type == "tool_calls"
            and any(c.get("type") == "file_search" for c in s.step_details.get("tool_calls", []))
            for s in self.store.steps(run.id)
        ):
            return
        query = self.store.last_user_text(run)
        if not query:
            return
        begin(self.store, run, cancel)
        call = Call(new_call_id(), "file_search", json.dumps({"query": query}))
        step, records = self.recorder.open_tool_calls(run, [call])
        records[0]["file_search"], rendered = self._search(run, context, query)
        state = {"auto": True, "searches": {call.id: {"query": query, "rendered": rendered}}}
        self.recorder.close_tool_calls(run, step, records, state, zero_usage())
