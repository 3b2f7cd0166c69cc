"""The metrics of one server process, kept in a registry of its own, and updated as things happen: a job's
wait in the queue, each reply's time to first token and speed, each job's end, each HTTP request, code
interpreter sessions, files that failed to index. Nothing here reads the database: what needs a count of
rows is read at scrape time (state.py).

Time to first token is measured per reply (each model turn of a job): from the moment the turn holds one of
its model's slots (the prompt is then built and sent) to the engine's first piece of text, whatever it is
(answer, reasoning or tool-call syntax). The wait before that is the queue wait (created -> its first turn
got a slot), measured once per job; the two add up to what a client waits for the first token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics

from assistd.engine.claims import JobEnd
from assistd.ids import created_ms_of
from assistd.metrics.logs import JOBS_LOG, emit

MAX_TRACES = 10_000  # jobs remembered between their first reply and their end (ended elsewhere: dropped)

PREFIXES = {"run_": "runs", "resp_": "responses"}

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
RATE_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def api_of(job_id: str) -> tuple[str, str]:
    """(the API label, the id prefix) of a job id."""
    for prefix, api in PREFIXES.items():
        if job_id.startswith(prefix):
            return api, prefix
    return "other", ""


def _since_created(job_id: str) -> float | None:
    _, prefix = api_of(job_id)
    created = created_ms_of(job_id, prefix)
    return None if created is None else max(0.0, time.time() - created / 1000)


def _tokens(usage: dict[str, Any] | None) -> tuple[int, int]:
    """(prompt, completion) tokens of a run's usage or a response's."""
    usage = usage or {}
    prompt = usage.get("prompt_tokens", usage.get("input_tokens")) or 0
    completion = usage.get("completion_tokens", usage.get("output_tokens")) or 0
    return int(prompt), int(completion)


@dataclass
class JobTrace:
    """What the job log line of a job needs from its execution here."""

    queue_wait: float | None = None
    ttft: float | None = None  # its first reply's


class Metrics:
    """The registry of one Container and the metrics updated on the hot paths (each update is an in-memory
    increment or observation)."""

    def __init__(self, log_json: bool = False) -> None:
        disable_created_metrics()  # no `_created` series beside each counter (a process-wide switch)
        self.registry = CollectorRegistry(auto_describe=False)
        self.log_json = log_json
        self._traces: dict[str, JobTrace] = {}
        self._lock = threading.Lock()
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds...: read from /proc at each
        # scrape (sizing a box: this process's CPU against the tokens and jobs it counts)
        ProcessCollector(registry=r)
        job = ["api", "model"]
        self.jobs_finished = Counter(
            "assistd_jobs_finished",
            "Jobs (runs, responses) that ended, by end status",
            [*job, "status"],
            registry=r,
        )
        self.tokens = Counter(
            "assistd_tokens",
            "Tokens of the jobs that ended (kind: prompt, completion)",
            [*job, "kind"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "assistd_queue_wait_seconds",
            "From a job's creation to its first model turn holding a slot (status in_progress)",
            job,
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "assistd_time_to_first_token_seconds",
            "Per reply: from its turn holding a model slot (prompt then built and sent) to its first text",
            job,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "assistd_tokens_per_second",
            "Per reply of 2+ tokens: completion tokens after the first, per second after the first",
            job,
            buckets=RATE_BUCKETS,
            registry=r,
        )
        self.job_duration = Histogram(
            "assistd_job_duration_seconds",
            "From a job's creation to its end (queue, generation, tools; a run's wait for tool outputs too)",
            job,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "assistd_http_requests",
            "HTTP requests by route template and status code",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "assistd_http_request_duration_seconds",
            "HTTP request durations by route template (a stream: until it ends)",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.code_sessions = Counter(
            "assistd_code_interpreter_sessions_started",
            "Code interpreter sessions (kernels) started",
            registry=r,
        )
        self.ingest_failures = Counter(
            "assistd_ingestion_failures", "Vector store files that ended failed in this process", registry=r
        )

    # -------------------------------------------------------------------------------------------- jobs
    def reply(self, run: Any) -> ReplyClock:
        """A reply of job `run` (a RunRow, or a response's job) starts: it holds a model slot now. The job's
        first reply since its creation also measures its wait in the queue."""
        api, _ = api_of(run.id)
        with self._lock:
            trace = self._traces.get(run.id)
            if trace is None:
                if len(self._traces) >= MAX_TRACES:
                    self._traces.pop(next(iter(self._traces)))
                trace = self._traces[run.id] = JobTrace()
                first_start = run.started_at is None  # not one continued after tool outputs
            else:
                first_start = False
        if first_start and (wait := _since_created(run.id)) is not None:
            trace.queue_wait = wait
            self.queue_wait.labels(api, run.model).observe(wait)
        return ReplyClock(self, trace, api, run.model)

    def reply_done(self, clock: ReplyClock, completion_tokens: int) -> None:
        end = time.monotonic()
        if not clock.first:
            return  # the engine gave no text at all
        ttft = clock.first - clock.started
        self.ttft.labels(clock.api, clock.model).observe(ttft)
        if clock.trace.ttft is None:
            clock.trace.ttft = ttft
        if completion_tokens >= 2 and end > clock.first:
            rate = (completion_tokens - 1) / (end - clock.first)
            self.tokens_per_second.labels(clock.api, clock.model).observe(rate)

    def job_ended(self, end: JobEnd) -> None:
        """A job's end (ClaimQueue.on_end): counted by the process that ended it."""
        api, _ = api_of(end.id)
        self.jobs_finished.labels(api, end.model, end.status).inc()
        duration = _since_created(end.id)
        if duration is not None:
            self.job_duration.labels(api, end.model).observe(duration)
        prompt, completion = _tokens(end.usage)
        if prompt:
            self.tokens.labels(api, end.model, "prompt").inc(prompt)
        if completion:
            self.tokens.labels(api, end.model, "completion").inc(completion)
        with self._lock:
            trace = self._traces.pop(end.id, None) or JobTrace()
        if self.log_json:
            emit(
                JOBS_LOG,
                "job_end",
                **{"run_id" if api == "runs" else "response_id": end.id},
                **{"thread_id" if api == "runs" else "conversation_id": end.parent},
                api=api,
                project=end.project,
                model=end.model,
                status=end.status,
                error_code=end.error_code,
                prompt_tokens=prompt,
                completion_tokens=completion,
                queue_wait_ms=_ms(trace.queue_wait),
                ttft_ms=_ms(trace.ttft),
                duration_ms=_ms(duration),
            )

    # ----------------------------------------------------------------------------------- elsewhere
    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def code_session_started(self, record: Callable[..., None]) -> Callable[..., None]:
        """The code interpreter's `on_session_started` hook `record`, counting each session too."""

        def started(*args: Any, **kwargs: Any) -> None:
            self.code_sessions.inc()
            record(*args, **kwargs)

        return started


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


class ReplyClock:
    """One reply's times: its start (the turn holds a model slot) and its first piece of text. The backend
    given to the reply reader is `watch(backend)`, whose generate marks the first piece: per piece, one
    comparison."""

    __slots__ = ("api", "first", "metrics", "model", "started", "trace")

    def __init__(self, metrics: Metrics, trace: JobTrace, api: str, model: str) -> None:
        self.metrics, self.trace, self.api, self.model = metrics, trace, api, model
        self.started = time.monotonic()
        self.first = 0.0

    def watch(self, backend: Any) -> Any:
        return _Watched(backend, self)

    def done(self, completion_tokens: int) -> None:
        self.metrics.reply_done(self, completion_tokens)


class _Watched:
    """A backend as the reply reader sees it: the same, but its generate marks the reply's first text."""

    def __init__(self, backend: Any, clock: ReplyClock) -> None:
        self._backend = backend
        self._clock = clock

    def generate(self, prompt: str, params: Any, on_text: Callable[[str], None], cancelled: Any) -> Any:
        clock = self._clock

        def seen(piece: str) -> None:
            if not clock.first:
                clock.first = time.monotonic()
            on_text(piece)

        return self._backend.generate(prompt, params, seen, cancelled)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)
