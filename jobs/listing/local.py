"""Local files: one folder's entries, and the stat that makes a file a row (or an error row)."""
from __future__ import annotations

import errno
import os
import stat as statmod
from collections.abc import Callable

from jobs.listing.rows import Rows
from jobs.storage import local_key, local_path


def local_scan(dir_key: str, exts: tuple[str, ...], rows: Rows, subdirs: Callable[[str], None]) -> None:
    """One folder: matching entries become rows, sub-folders go to ``subdirs`` (not followed
    when they are symbolic links). A folder that cannot be read becomes a list_error row."""
    path = os.fsencode(local_path(dir_key))
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        rows.fail(dir_key, "list_error", f"cannot list folder ({exc.strerror or exc})")
        return
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            subdirs(local_key(entry.path))
        if os.fsdecode(entry.name).lower().endswith(exts):
            local_stat(local_key(entry.path), rows)


def local_stat(key: str, rows: Rows) -> None:
    """A row for the file ``key`` names (size, "size:mtime_ns"), or the error row saying why not."""
    path = local_path(key)
    try:
        st = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        if os.path.lexists(path):
            rows.fail(key, "not_found", "broken symbolic link (its target does not exist)")
        else:
            rows.fail(key, "not_found", "no such file")
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            rows.fail(key, "not_a_file", "symbolic link loop")
        elif exc.errno == errno.ENOTDIR:
            rows.fail(key, "not_found", "no such file (a parent is not a folder)")
        else:
            rows.fail(key, "read_error", f"cannot stat ({exc.strerror or exc})")
        return
    if statmod.S_ISREG(st.st_mode):
        rows.add(key, st.st_size, f"{st.st_size}:{st.st_mtime_ns}")
        return
    what = ("is a folder" if statmod.S_ISDIR(st.st_mode) else "is a FIFO" if statmod.S_ISFIFO(st.st_mode)
            else "is a socket" if statmod.S_ISSOCK(st.st_mode) else "is a device"
            if statmod.S_ISCHR(st.st_mode) or statmod.S_ISBLK(st.st_mode) else "is not a regular file")
    rows.fail(key, "not_a_file", what)
