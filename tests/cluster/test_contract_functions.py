"""tests/contract/test_functions.py against the cluster, each request to a random API node: a run parks in
requires_action on one node and its tool outputs are submitted (streamed or not) through another.

Left out: test_requires_action_expires starts a single-node server of its own (--run-expiry-seconds)."""

from __future__ import annotations

import pytest

from tests.contract.test_functions import (  # noqa: F401 - collected by pytest: fixtures and tests
    assistant,
    test_named_function_choice_and_single_call,
    test_parallel_tool_calls_false_allows_one_call,
    test_streamed_function_calls_and_submit_tool_outputs_stream,
    test_submit_tool_outputs_and_poll,
    test_submit_tool_outputs_errors,
    test_tool_choice_none_answers_in_text,
    test_two_functions_called_in_one_request_then_answer,
    test_unsupported_schema_is_refused_at_assistant_creation,
)

pytestmark = [pytest.mark.cluster, pytest.mark.model]
