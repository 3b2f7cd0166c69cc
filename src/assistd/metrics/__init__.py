"""What an operator runs the server by: Prometheus metrics (`GET /metrics`) and structured logs
(`--log-json`).

`jobs.py` Metrics: the registry of one Container (never prometheus_client's global one: tests build several
containers in one process) with the metrics updated as things happen (jobs, replies, HTTP requests);
`state.py` StateCollector: the gauges read at scrape time (queue depth, active jobs, ingestion queue, engine
slots, retries); `http.py` the access middleware and the `/metrics` route; `logs.py` the JSON log lines."""

from assistd.metrics.jobs import Metrics, ReplyClock

__all__ = ["Metrics", "ReplyClock"]
