"""`assistd upload FILE... [--vector-store ID | --new-store NAME]`: files to the server through the openai
SDK, with progress: bytes sent per file, then the vector store's indexing (files done / total)."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from assistd.doctor import human_size


class Progress:
    """One status line, rewritten in place on a terminal; a line per milestone otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last: Any = None

    def show(self, text: str, milestone: Any = None) -> None:
        """Rewrites the line on a terminal; elsewhere prints it when `milestone` changes (if given)."""
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif milestone is not None and milestone != self.last:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last = milestone

    def done(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        print(text, flush=True)


class CountingReader:
    """A file whose reads report how far the upload got (httpx reads multipart bodies in chunks)."""

    def __init__(self, handle: BinaryIO, size: int, report: Any) -> None:
        self.handle, self.size, self.report, self.sent = handle, size, report, 0

    def read(self, n: int = -1) -> bytes:
        chunk = self.handle.read(n)
        self.sent += len(chunk)
        self.report(self.sent, self.size)
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def upload_files(client: Any, paths: list[Path], progress: Progress) -> list[Any]:
    uploaded = []
    for i, path in enumerate(paths, 1):
        size = path.stat().st_size
        label = f"[{i}/{len(paths)}] {path.name}"

        def report(sent: int, total: int, label: str = label) -> None:
            pct = 100 * sent // total if total else 100
            progress.show(f"uploading {label}: {human_size(sent)} / {human_size(total)} ({pct}%)")

        with path.open("rb") as handle:
            reader = CountingReader(handle, size, report)
            obj = client.files.create(file=(path.name, reader), purpose="assistants")
        progress.done(f"uploaded {label} -> {obj.id} ({human_size(obj.bytes)})")
        uploaded.append(obj)
    return uploaded


def index(client: Any, store_id: str, file_ids: list[str], progress: Progress, poll: float = 0.5) -> Any:
    batch = client.vector_stores.file_batches.create(vector_store_id=store_id, file_ids=file_ids)
    started = time.monotonic()
    while batch.file_counts.in_progress > 0:
        c = batch.file_counts
        progress.show(
            f"indexing into {store_id}: {c.completed + c.failed}/{c.total} files done "
            f"({time.monotonic() - started:.0f} s)",
            milestone=(c.completed, c.failed),
        )
        time.sleep(poll)
        batch = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store_id)
    c = batch.file_counts
    progress.done(
        f"indexed into {store_id}: {c.completed} completed, {c.failed} failed, {c.cancelled} cancelled"
    )
    return batch


def upload(
    base_url: str, api_key: str, paths: list[str], store_id: str | None = None, new_store: str | None = None
) -> int:
    import openai

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    files = [Path(p).expanduser() for p in paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        print(f"assistd upload: no such file: {', '.join(missing)}", file=sys.stderr)
        return 1
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1)
    progress = Progress()
    try:
        uploaded = upload_files(client, files, progress)
        if new_store:
            store_id = client.vector_stores.create(name=new_store).id
            print(f"created vector store {store_id} ({new_store})", flush=True)
        if store_id:
            batch = index(client, store_id, [f.id for f in uploaded], progress)
            if batch.file_counts.failed:
                return 1
    except openai.APIConnectionError:
        print(f"assistd upload: cannot reach {base_url}: is `assistd serve` running?", file=sys.stderr)
        return 1
    except openai.APIStatusError as exc:
        print(f"assistd upload: {exc.message}", file=sys.stderr)
        return 1
    return 0
