"""tests/contract/test_file_search_runs.py against the cluster, each request to a random API node: files
are uploaded to the shared files dir, indexed by a worker into the Chroma server, searched by runs on any
worker. Every test of the module is here."""

from __future__ import annotations

import pytest

from tests.contract.test_file_search_runs import (  # noqa: F401 - collected by pytest: fixtures and tests
    assistant,
    store,
    test_include_returns_result_contents,
    test_message_attachment_is_searched_in_its_thread,
    test_run_searches_and_cites_the_file,
    test_stream_sees_the_citations,
    vault_file_id,
)

pytestmark = [pytest.mark.cluster, pytest.mark.model]
