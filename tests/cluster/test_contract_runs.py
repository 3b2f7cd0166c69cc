"""tests/contract/test_runs.py against the cluster, each request to a random API node (see conftest.py).

Left out: test_history_longer_than_the_context_is_truncated and
test_restart_mid_generation_leaves_no_run_in_progress start single-node servers of their own (no cluster);
a crash mid-run in a cluster is tests/cluster/test_failover.py."""

from __future__ import annotations

import pytest

from tests.contract.test_runs import (  # noqa: F401 - collected by pytest: fixtures and tests
    assistant,
    test_active_run_conflicts,
    test_async_stream_and_text_deltas,
    test_cancel_mid_generation,
    test_create_and_poll_answers_and_records_steps_and_usage,
    test_create_and_run_poll,
    test_json_object_response_format,
    test_json_schema_response_format_parses_and_validates,
    test_max_completion_tokens_ends_incomplete,
    test_raw_sdk_stream_yields_typed_events,
    test_raw_stream_of_create_and_run_matches_the_spec,
    test_stream_survives_a_client_that_disconnects,
    test_stream_with_event_handler_fires_every_callback,
    test_unknown_model_and_bad_ids,
    test_update_run_metadata_and_other_project_cannot_see_it,
)

pytestmark = [pytest.mark.cluster, pytest.mark.model]
