"""Folders the project writes into: never one that holds something it did not write."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnvsmlp.errors import UserError

PARTIAL_PREFIX = ".partial-"


def claim_dir(path: str | os.PathLike, owned: set[str], what: str) -> Path:
    """Make ``path`` a folder to write ``what`` into, and refuse one that holds anything else.

    The folder may be new, empty, or hold only entries named in ``owned``
    (what an earlier run of the same step wrote) and partial files that
    step left behind.

    Args:
        path: the folder.
        owned: names of the files and folders the step writes at its top.
        what: what the folder is for, for the messages.

    Returns:
        The folder, created if it was missing.

    Raises:
        UserError: ``path`` is a file, cannot be created, or holds an entry
            the step did not write (named in the message).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: is a file, not a folder for the {what}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entries = sorted(p.name for p in folder.iterdir())
    except OSError as err:
        raise UserError(f"{folder}: cannot use it for the {what} ({err.strerror})") from None
    foreign = [n for n in entries if n not in owned and not n.startswith(PARTIAL_PREFIX)]
    if foreign:
        raise UserError(
            f"{folder}: holds {foreign[0]!r}, which is not the {what} this project writes; "
            "choose a new or empty folder"
        )
    return folder


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A partial file beside ``path`` to write; it becomes ``path`` only if the block succeeds.

    A reader sees the old file or the whole new one, never a part; a failed
    block leaves no partial file behind.
    """
    partial = path.with_name(f"{PARTIAL_PREFIX}{path.name}")
    try:
        yield partial
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a partial file beside ``path``, then rename it to ``path``.

    A reader sees the old file or the whole new one, never a part; a failed
    ``write`` leaves no partial file behind.
    """
    with replacing(Path(path)) as partial:
        write(partial)
