"""Folders the project writes into: never one that holds something it did not write."""

import errno
import fcntl
import glob
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil
from pydantic import BaseModel, ConfigDict

from cnnvsmlp.errors import UserError

PARTIAL_PREFIX = ".partial-"
# A URI's scheme, as in s3://bucket or file:/path.
URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")
T = TypeVar("T")
# This machine in the names of partial folders and run records, beside a process id.
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "localhost"
# Something of another host's is stale once untouched this long.
FOREIGN_STALE_S = 3600.0


def local_folder(path: str | os.PathLike, what: str) -> Path:
    """The local folder ``path`` names, or the one a link there points at; UserError for a URI."""
    if URI.match(str(path)):  # Path("s3://b") reads "s3:/b": look at the text as given
        raise UserError(f"{path}: a URI; give a local folder for the {what}")
    folder = Path(path)
    if folder.is_symlink():
        target = Path(os.path.realpath(folder))
        if not target.exists():
            raise UserError(
                f"{folder}: a link to {os.readlink(folder)}, which does not exist; "
                f"create it or choose another folder for the {what}"
            )
        return target
    return folder


def _foreign(folder: Path, owned: set[str], what: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: is a file, not a folder for the {what}")
    try:
        entries = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    except OSError as err:
        raise UserError(f"{folder}: cannot use it for the {what} ({err.strerror})") from None
    foreign = [n for n in entries if n not in owned and not n.startswith(PARTIAL_PREFIX)]
    if foreign:
        raise UserError(
            f"{folder}: holds {foreign[0]!r}, which is not the {what} this project writes; "
            "choose a new or empty folder"
        )


def claim_dir(path: str | os.PathLike, owned: set[str], what: str) -> Path:
    """Make ``path`` a folder for ``what``: new, empty, or holding only ``owned`` and partials."""
    folder = local_folder(path, what)
    _foreign(folder, owned, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{folder}: cannot use it for the {what} ({err.strerror})") from None
    return folder


def owner_alive(pid: object, host: str | None = None, touched: float | None = None) -> bool:
    """Whether ``pid`` runs here, or on another ``host`` was ``touched`` within FOREIGN_STALE_S."""
    if host and host != HOST:
        return touched is not None and time.time() - touched < FOREIGN_STALE_S
    return isinstance(pid, int) and pid > 0 and psutil.pid_exists(pid)


def last_touched(path: Path) -> float | None:
    """The newest modification time of ``path`` and the entries right inside it; None if gone."""
    try:
        times = [path.stat().st_mtime]
        if path.is_dir():
            times += [p.stat().st_mtime for p in path.iterdir()]
    except OSError:
        return None
    return max(times)


def _remove_stale_partials(folder: Path) -> None:
    """Remove what a killed :func:`build_dir` (``<pid>@<host>``) left; put a set-aside one back."""
    prefix = f"{PARTIAL_PREFIX}{folder.name}."
    for entry in sorted(folder.parent.glob(f"{glob.escape(prefix)}*")):
        pid, _, host = entry.name[len(prefix) :].split(".", 1)[0].partition("@")
        if pid.isdigit() and owner_alive(int(pid), host or None, last_touched(entry)):
            continue
        if entry.name.endswith(".old") and not folder.exists():
            entry.rename(folder)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def build_dir(path: str | os.PathLike, owned: set[str], what: str, build: Callable[[Path], T]) -> T:
    """Build a folder beside ``path`` with ``build``, swap it in whole, return what it returns."""
    folder = _replaceable(path, owned, what)
    missing = [p for p in (folder.parent, *folder.parent.parents) if not p.exists()]
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(folder)
        prefix = f"{PARTIAL_PREFIX}{folder.name}.{os.getpid()}@{HOST}."
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=folder.parent))
    except OSError as err:
        _remove_empty(missing)
        raise UserError(
            f"{folder.parent}: cannot write the {what} there ({err.strerror}); {_remedy(err)}"
        ) from None
    old, umask = tmp.with_name(f"{tmp.name}.old"), os.umask(0o022)
    os.umask(umask)  # read, and put back
    try:
        tmp.chmod(folder.stat().st_mode if folder.exists() else 0o777 & ~umask)
        result = build(tmp)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    except BaseException as err:
        if old.exists() and not folder.exists():
            old.rename(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(missing)
        if isinstance(err, OSError):
            raise UserError(
                f"{folder}: cannot write the {what} ({err.strerror or err}); nothing was "
                f"changed: {_remedy(err)}"
            ) from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    return result


def _replaceable(path: str | os.PathLike, owned: set[str], what: str) -> Path:
    """The absolute folder ``path`` names, if a build may replace it whole."""
    try:
        cwd = Path.cwd()
    except FileNotFoundError:
        raise UserError("the current folder was removed; cd into one that exists") from None
    folder = Path(os.path.normpath(cwd / local_folder(path, what)))
    _foreign(folder, owned, what)
    if folder.resolve() in (cwd.resolve(), *cwd.resolve().parents):
        raise UserError(
            f"{path}: holds the current folder, and the {what} replaces its folder whole; "
            "name a folder from outside it"
        )
    if os.path.ismount(folder):
        raise UserError(
            f"{path}: a mount point, and the {what} replaces its folder whole; "
            f"name a subfolder of it, e.g. {folder / 'data'}"
        )
    return folder


def _remedy(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space or choose another folder"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a folder you can write"
    if err.errno == errno.EBUSY:
        return "a mount point cannot be replaced: name a subfolder of it"
    return "choose another folder"


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed build created, innermost first, if still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a partial file beside ``path``, then rename it to ``path``."""
    partial = Path(path).with_name(f"{PARTIAL_PREFIX}{Path(path).name}")
    try:
        write(partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@contextmanager
def one_writer(lock: Path, busy: Callable[[int | None], object]) -> Iterator[None]:
    """Hold the ``flock`` ``lock`` in the block; ``busy(holder pid)`` raises, or returns to wait."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            busy(int(holder) if holder.isdigit() else None)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


class Record(BaseModel):
    """A typed record passed as JSON; a field it does not define is refused, not ignored."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    def write(self, path: str | os.PathLike) -> None:
        """Write the record as JSON, atomically."""
        write_atomically(path, lambda p: p.write_text(self.model_dump_json(indent=1)))

    @classmethod
    def read(cls, path: str | os.PathLike):
        """Read and validate a record from a JSON file."""
        return cls.model_validate_json(Path(path).read_text())
