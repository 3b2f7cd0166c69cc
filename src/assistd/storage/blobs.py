"""File bodies on disk, one file per id. Written to a temporary name and renamed, so a crash never leaves
a half-written blob under a real id."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class BlobTooLarge(Exception):
    pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, file_id: str) -> Path:
        return self.root / file_id[-2:] / file_id

    def write(self, file_id: str, source: BinaryIO, limit: int) -> tuple[int, str]:
        """Copy `source` in; returns (size, sha256). Raises BlobTooLarge (and keeps nothing) past `limit`."""
        target = self.path(file_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        digest, size = hashlib.sha256(), 0
        try:
            with partial.open("wb") as out:
                while block := source.read(CHUNK):
                    size += len(block)
                    if size > limit:
                        raise BlobTooLarge(size)
                    digest.update(block)
                    out.write(block)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return size, digest.hexdigest()

    def write_bytes(self, file_id: str, data: bytes) -> tuple[int, str]:
        import io

        return self.write(file_id, io.BytesIO(data), limit=len(data) + 1)

    def delete(self, file_id: str) -> None:
        self.path(file_id).unlink(missing_ok=True)

    def copy_to(self, file_id: str, destination: Path) -> None:
        shutil.copyfile(self.path(file_id), destination)
