"""Files in and out of a session's /mnt/data (its data dir on the host).

The kernel owns that directory and may plant links in it at any time, while the server writes and reads
there as root: every write goes through directory descriptors opened without following links, and every
read checks that the file it opened is a regular file inside the directory, owned by the kernel's uid.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

MAX_OUTPUT_FILES = 20  # files returned per execution
MAX_SCANNED = 10000  # files looked at under /mnt/data after an execution

Snapshot = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns)


def safe_name(name: str) -> str:
    """A file name usable under /mnt/data: the last path component, never empty, '.' or '..'."""
    base = os.path.basename(name.replace("\\", "/")).strip().replace("\x00", "")
    return base if base not in ("", ".", "..") else "file"


def safe_path(name: str) -> str:
    """A relative path under /mnt/data: its components without '', '.', '..' or NUL, never empty. A name
    with no directory is `safe_name`'s; a container file the code wrote in a subdirectory keeps it."""
    parts = [p.strip() for p in name.replace("\x00", "").split("/")]
    parts = [p for p in parts if p not in ("", ".", "..")]
    return "/".join(parts) if parts else "file"


def snapshot(root: Path) -> Snapshot:
    """Size and mtime of the regular files under root (symlinks never followed; at most MAX_SCANNED)."""
    state: Snapshot = {}
    seen = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            seen += 1
            if seen > MAX_SCANNED:
                return state
            full = os.path.join(dirpath, f)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                state[os.path.relpath(full, root)] = (st.st_size, st.st_mtime_ns)
    return state


def changed_files(root: Path, before: Snapshot, max_bytes: int, uid: int | None) -> list[tuple[str, bytes]]:
    """Files under root that are new or changed since `before`: regular files only, never through a link,
    and (with a kernel uid) only files that uid owns, since the kernel may swap a directory for a link to a
    host path between the scan and the read."""
    return _changed(root, before, snapshot(root), max_bytes, uid)


def written_and_removed(
    root: Path, before: Snapshot, max_bytes: int, uid: int | None
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """`changed_files`, and the files of `before` that are gone (none when a scan was cut at MAX_SCANNED:
    a file past the cut is not known to be gone)."""
    after = snapshot(root)
    gone = [] if MAX_SCANNED in (len(before), len(after)) else sorted(set(before) - set(after))
    return _changed(root, before, after, max_bytes, uid), gone


def _changed(
    root: Path, before: Snapshot, after: Snapshot, max_bytes: int, uid: int | None
) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    real_root = os.path.realpath(root)
    for rel, info in sorted(after.items()):
        if before.get(rel) == info or info[0] > max_bytes:
            continue
        try:
            fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fd)
                inside = os.path.realpath(f"/proc/self/fd/{fd}").startswith(real_root + os.sep)
                if not stat.S_ISREG(st.st_mode) or not inside or (uid is not None and st.st_uid != uid):
                    continue
                out.append((rel, fh.read(max_bytes + 1)[:max_bytes]))
        except OSError:
            continue
        if len(out) >= MAX_OUTPUT_FILES:
            break
    return out


def place_inputs(data_dir: Path, uid: int | None, files: Iterable[tuple[str, bytes]]) -> dict[str, int]:
    """Copies the files not yet there into /mnt/data (`safe_path` of each name); returns their sizes by
    relative path. A file already there is left as it is (the code may have changed it)."""
    placed: dict[str, int] = {}
    for name, content in files:
        rel = safe_path(name)
        try:
            _write(data_dir, rel, content, uid, replace=False)
        except OSError as exc:  # there already, or a link the kernel planted on the way
            if exc.errno not in (errno.EEXIST, errno.ENOTDIR, errno.ELOOP):
                raise
            continue
        placed[rel] = len(content)
    return placed


def write_file(data_dir: Path, rel: str, content: bytes, uid: int | None) -> None:
    """Writes (or replaces) one file under /mnt/data, creating its directories, never through a link."""
    _write(data_dir, safe_path(rel), content, uid, replace=True)


def remove_file(data_dir: Path, rel: str) -> None:
    """Removes one file under /mnt/data if it is there (a link is removed, never followed)."""
    parts = safe_path(rel).split("/")
    with contextlib.suppress(OSError):
        fd = _open_dirs(data_dir, parts[:-1], None, create=False)
        try:
            os.unlink(parts[-1], dir_fd=fd)
        finally:
            os.close(fd)


def chown_tree(path: Path, uid: int | None) -> None:
    if uid is None:
        return
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, uid, uid, follow_symlinks=False)
        for f in files:
            os.chown(os.path.join(dirpath, f), uid, uid, follow_symlinks=False)


def _write(data_dir: Path, rel: str, content: bytes, uid: int | None, replace: bool) -> None:
    parts = rel.split("/")
    dir_fd = _open_dirs(data_dir, parts[:-1], uid, create=True)
    try:
        if replace:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(parts[-1], dir_fd=dir_fd)  # a link or a file the kernel holds open: a new inode
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(parts[-1], flags, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            if uid is not None:
                os.fchown(fh.fileno(), uid, uid)
    finally:
        os.close(dir_fd)


def _open_dirs(data_dir: Path, parts: list[str], uid: int | None, create: bool) -> int:
    """A descriptor of data_dir/parts..., each level opened without following a link (made if `create`)."""
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                    if uid is not None:
                        os.chown(part, uid, uid, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd
