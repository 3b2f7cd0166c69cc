"""Hostile files through the SDK against the real server: each ends `failed` with `invalid_file` and the
reason, the good file of the same batch is indexed, and the server process's peak RSS stays flat."""

from __future__ import annotations

from pathlib import Path

from tests.file_search_bombs import broken_xml_docx, flate_bomb_pdf, paragraph_docx, zero_part_docx
from tests.file_search_docs import MARKDOWN

MiB = 1024 * 1024


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmHWM missing")


def test_bombs_fail_with_the_reason_and_the_server_stays_small(client, server, tmp_path):
    store = client.vector_stores.create(name="hostile")
    # the embedding model is loaded (and the extraction process started) before memory is measured
    warm = client.vector_stores.file_batches.upload_and_poll(
        store.id, files=[("kitchen.md", MARKDOWN.encode()), ("cut.docx", broken_xml_docx())]
    )
    assert (warm.file_counts.completed, warm.file_counts.failed) == (1, 1)
    bombs = {
        "zeros.docx": (
            zero_part_docx(tmp_path / "zeros.docx").read_bytes(),
            "expands to 1.0 GiB (limit 256 MiB",
        ),
        "paras.docx": (paragraph_docx(), "that expands"),
        "bomb.pdf": (flate_bomb_pdf(), "expands beyond 64 MiB"),
    }
    Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")  # the server's peak RSS starts from now
    before = _peak_rss(server.proc.pid)
    batch = client.vector_stores.file_batches.upload_and_poll(
        store.id, files=[(name, data) for name, (data, _) in bombs.items()]
    )
    growth = _peak_rss(server.proc.pid) - before
    assert batch.file_counts.failed == 3 and batch.status == "completed"
    failed = client.vector_stores.files.list(store.id, filter="failed", limit=100).data
    errors = {client.files.retrieve(f.id).filename: f.last_error for f in failed}
    assert set(errors) == {"cut.docx", *bombs}
    assert errors["cut.docx"].code == "invalid_file" and "XMLSyntaxError" in errors["cut.docx"].message
    for name, (_, reason) in bombs.items():
        assert errors[name].code == "invalid_file", (name, errors[name])
        assert name in errors[name].message and reason in errors[name].message, (name, errors[name])
    assert growth < 150 * MiB, f"the server's peak RSS grew by {growth / MiB:.0f} MiB"
