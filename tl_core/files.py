"""Reading and writing the files a user hands tl, safely.

Writing: a temporary file in the same folder, flushed to disk (``fsync``), then a rename, so that a reader - or a
machine that loses power - never sees half a file. Reading: text must be UTF-8 (a byte-order mark is fine), and
JSON or YAML nested deeper than Python's recursion limit is refused, each as one :class:`DataError` line that names
the file, instead of a ``UnicodeDecodeError`` or ``RecursionError`` traceback. A run folder is checked before any
work (:func:`check_writable`) and locked while a run writes to it (:class:`RunLock`).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tl_core.errors import DataError, RunError, TLError


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a temporary file, ``fsync`` and a rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def commit_file(tmp: Path, path: Path) -> None:
    """Make ``tmp`` (written beside ``path`` by a library's own writer, e.g. safetensors' ``save_file``) durable and
    rename it to ``path``: what :func:`write_atomic` does, for a file too large to hold in memory twice."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def first_line(exc: BaseException) -> str:
    """An exception's first line, at most 160 characters (its type's name when it says nothing): what goes into an
    error line in brackets."""
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _reason(exc: BaseException) -> str:
    if "integer string conversion" in str(exc):  # Python's advice (sys.set_int_max_str_digits) is not the user's fix
        return "an integer of more than 4300 digits"
    return first_line(exc)


def commit_folder(tmp: Path, target: Path) -> None:
    """Make the folder ``tmp`` (filled by a library's own writer, e.g. ``save_pretrained``) durable - every file,
    then every folder, deepest first - replace ``target`` with it, and make the rename durable: what
    :func:`commit_file` does for one file."""
    import shutil

    for root, _dirs, files in os.walk(tmp, topdown=False):
        for name in files:
            path = Path(root) / name
            if path.is_symlink():
                continue
            with open(path, "rb+") as fh:  # writable: fsync needs it on some systems
                os.fsync(fh.fileno())
        _fsync_folder(Path(root))
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    _fsync_folder(target.parent)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (anything JSON cannot say is written as its ``str``), atomically."""
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- reading what a user hands tl


def decode_text(raw: bytes, what: str, error: type[TLError] = DataError) -> str:
    """``raw`` as UTF-8 text (a leading byte-order mark dropped), or one ``error`` line naming ``what`` and the first
    byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(f"{what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8") \
            from None


def read_text(path: Path | str, what: str | None = None, error: type[TLError] = DataError) -> str:
    """The UTF-8 text of ``path``; a missing file, a folder or a file that is not UTF-8 is one ``error`` line."""
    path = Path(path)
    what = what or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} is a folder, not a file; give the file in it") from None
    except OSError as exc:
        raise error(f"{what} cannot be read ({exc.strerror or exc})") from None
    return decode_text(raw, what, error)


def parse_json(text: str, what: str, error: type[TLError] = DataError) -> Any:
    """``text`` parsed as JSON; invalid JSON, or JSON nested too deep to parse, is one ``error`` line that names the
    place (a caller that knows what the file is for adds how to fix it)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise error(f"{what}: JSON nested too deeply to read; no real annotation file nests like this") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300), a date like 2001-13-45
        raise error(f"{what}: a value that cannot be read ({_reason(exc)}); fix it") from None


def read_json(path: Path | str, what: str | None = None, error: type[TLError] = DataError) -> Any:
    """The JSON in ``path`` (UTF-8), with every failure one ``error`` line (:func:`read_text`, :func:`parse_json`)."""
    what = what or str(path)
    return parse_json(read_text(path, what, error), what, error)


def parse_yaml(text: str, what: str, error: type[TLError] = DataError) -> Any:
    """``text`` read with ``yaml.safe_load`` (nothing in it is executed); invalid YAML, or YAML nested too deep to
    read, is one ``error`` line with the line number."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        if problem is None:  # a ReaderError (a NUL or control character): its text runs over several lines
            position = getattr(exc, "position", None)
            where = "" if position is None else f" at character {position}"
            problem = str(getattr(exc, "reason", None) or str(exc).splitlines()[0])
        hint = "; indent with spaces, not tabs" if "\\t" in problem else ""
        raise error(f"{what}: not valid YAML{where}: {problem}{hint}") from None
    except RecursionError:
        raise error(f"{what}: YAML nested too deeply to read") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300), a date like 2001-13-45
        raise error(f"{what}: a value that cannot be read ({_reason(exc)}); fix it") from None


def read_yaml(path: Path | str, what: str | None = None, error: type[TLError] = DataError) -> Any:
    """The YAML in ``path`` (UTF-8, ``safe_load``), with every failure one ``error`` line."""
    what = what or str(path)
    return parse_yaml(read_text(path, what, error), what, error)


# ---------------------------------------------------------------- the run folder


def check_writable(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or that cannot be written (a read-only folder, or one under a file),
    before any work: a :class:`RunError`. Nothing is created."""
    out = Path(out)
    if out.is_symlink() and not out.exists():  # dangling, or a loop
        raise RunError(f"--out {out} is a symbolic link to nothing; remove it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder; choose a folder for the run")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise RunError(f"--out {out}: {probe} is a file, so the folder cannot be made; choose another --out")
    try:  # by trying, not by os.access: root passes that check on a read-only mount too
        fd, name = tempfile.mkstemp(dir=probe, prefix=".tl-probe-")
    except OSError as exc:
        raise RunError(f"--out {out}: cannot write in {probe} ({exc.strerror or exc}); choose a folder you can write "
                       "to") from None
    os.close(fd)
    os.unlink(name)


class RunLock:
    """An exclusive lock on a run folder while a run writes to it: ``RUN/.tl-lock``, held with ``flock`` (released by
    the system when the process ends, even on SIGKILL, so a dead run never blocks its ``--resume``).

    A second run on the same folder is refused with a :class:`RunError` (:meth:`busy` tells before any work, without
    making anything). If the run fails before it wrote anything, :meth:`release` removes the lock file and every
    folder :meth:`acquire` made for it (nothing half-written is left).
    """

    NAME = ".tl-lock"
    IN_USE = "{out} is in use by another tl run; wait for it to finish, or choose another --out"

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.made: list[Path] = []  # the folders acquire() made, deepest first
        self._fd: int | None = None

    @classmethod
    def busy(cls, out: Path) -> bool:
        """True when another process holds the lock of ``out``; creates nothing."""
        file = Path(out) / cls.NAME
        try:
            import fcntl

            fd = os.open(file, os.O_RDWR)
        except (ImportError, OSError):  # no lock file (or no flock): nobody holds it
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return True
            raise
        finally:
            os.close(fd)  # releases the probe's lock
        return False

    def acquire(self) -> RunLock:
        self.made = [p for p in (self.out, *self.out.parents) if not p.exists()]
        self.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.out / self.NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; the finished-run check still holds
            self._fd = fd
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunError(self.IN_USE.format(out=self.out)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self, failed: bool = False) -> None:
        if self._fd is None:
            return
        try:
            if failed and {p.name for p in self.out.iterdir()} <= {self.NAME}:  # the run wrote nothing: no trace
                (self.out / self.NAME).unlink(missing_ok=True)  # while still holding it: no other run locks it now
                for folder in self.made:
                    try:
                        folder.rmdir()
                    except OSError:
                        break
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.release(failed=kind is not None)
