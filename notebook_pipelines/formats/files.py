"""Reading an input file safely: the one reader of the CLI and the Python API.

A path a user gives may name anything: a FIFO nobody writes to (reading blocks for ever), a
device that never ends (``/dev/zero``, read until memory runs out), a symlink ``x.yaml`` to
either, a file of gigabytes, bytes that are not UTF-8. :func:`read_bytes` and
:func:`read_text` open the path **without blocking**, refuse anything but a regular file
(checked on the open descriptor, so a symlink counts as what it points to), refuse a file over
``limit`` bytes before reading it and stop reading at the limit if it grows, and report
undecodable bytes with their line and column. Every refusal is an :class:`InputFileError`
whose message names the file and says how to fix it; a missing file is also a
``FileNotFoundError``.

>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "p.yaml"
>>> _ = path.write_bytes(b"pipeline:\\n  name: caf\\xe9\\n")
>>> try:
...     read_text(path)
... except InputFileError as err:
...     print(err.line, err.column, str(err).split(" is ", 1)[1])
2 12 not UTF-8 text (byte 0xe9 at line 2, column 12): save it as UTF-8
>>> try:
...     read_text("/dev/zero")
... except InputFileError as err:
...     print(err)
/dev/zero is a character device, not a regular file: give a YAML file
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ..errors import PipelineError

__all__ = [
    "MAX_TEXT_BYTES",
    "InputFileError",
    "MissingFileError",
    "decode",
    "read_bytes",
    "read_stream",
    "read_text",
]

#: the largest text file read by default (a pipeline or durations YAML): 32 MB. A pipeline of
#: 100,000 steps is about 10 MB of YAML; reading 32 MB of YAML already takes PyYAML a minute.
MAX_TEXT_BYTES = 32 * 2**20

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_CHUNK = 1 << 20


class InputFileError(PipelineError, ValueError):
    """An input file that cannot be read: missing, not a regular file, too large, not UTF-8.

    ``path`` is the file as given; ``line`` and ``column`` (1-based) say where undecodable
    bytes start (else ``None``).
    """

    def __init__(self, message: str, path: str = "", line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.path, self.line, self.column = path, line, column


class MissingFileError(InputFileError, FileNotFoundError):
    """The file does not exist (also a ``FileNotFoundError``)."""


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size:,} bytes"


def read_bytes(
    path: str | os.PathLike,
    *,
    limit: int = MAX_TEXT_BYTES,
    option: str = "",
    kind: str = "a YAML file",
    too_large: str = "split it, or give a smaller file",
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Args:
        path: the file.
        limit: refuse a file larger than this many bytes (before reading it; a file that grows
            while read stops at the limit).
        option: the flag that gave the path (``--durations``), named in messages.
        kind: what the file should be, for the message about a directory or device.
        too_large: how to fix a file over the limit.

    Raises:
        MissingFileError: no such file.
        InputFileError: not readable, a directory, a FIFO or device, or over ``limit`` bytes.
    """
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    label = f"{option} {text}" if option else text
    try:
        fd = os.open(text, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise MissingFileError(f"{option + ': ' if option else ''}no such file: {text}", text) from None
    except PermissionError:
        raise InputFileError(f"{label}: permission denied: make the file readable", text) from None
    except (OSError, ValueError) as err:  # ValueError: a NUL character in the name
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise InputFileError(f"{label}: cannot open the file ({reason})", text) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputFileError(f"{label} is a directory: give {kind}", text)
        if not stat.S_ISREG(info.st_mode):
            what = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise InputFileError(f"{label} is {what}, not a regular file: give {kind}", text)
        if info.st_size > limit:
            raise InputFileError(
                f"{label} is {_megabytes(info.st_size)}; files over {_megabytes(limit)} are refused: "
                f"{too_large}",
                text,
            )
        chunks, size = [], 0
        while chunk := os.read(fd, min(_CHUNK, limit + 1 - size)):
            size += len(chunk)
            chunks.append(chunk)
            if size > limit:  # the file grew while being read
                raise InputFileError(f"{label} is over {_megabytes(limit)}: refused: {too_large}", text)
    except OSError as err:
        raise InputFileError(f"{label}: cannot read the file ({err.strerror or err})", text) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def decode(data: bytes, label: str, path: str = "") -> str:
    """``data`` as UTF-8 text; undecodable bytes → :class:`InputFileError` with line and column.

    >>> decode(b"ok", "f.yaml")
    'ok'
    >>> try:
    ...     decode(b"a\\nb\\xff", "f.yaml")
    ... except InputFileError as err:
    ...     print(err)
    f.yaml is not UTF-8 text (byte 0xff at line 2, column 2): save it as UTF-8
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputFileError(
            f"{label} is not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}, column {column}): "
            "save it as UTF-8",
            path or label,
            line,
            column,
        ) from None


def read_text(
    path: str | os.PathLike,
    *,
    limit: int = MAX_TEXT_BYTES,
    option: str = "",
    kind: str = "a YAML file",
    too_large: str = "split it, or give a smaller file",
) -> str:
    """The UTF-8 text of the regular file ``path`` (see :func:`read_bytes` for the arguments).

    Raises:
        MissingFileError: no such file.
        InputFileError: as :func:`read_bytes`, or not UTF-8 (with the line and column).
    """
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    data = read_bytes(path, limit=limit, option=option, kind=kind, too_large=too_large)
    return decode(data, f"{option} {text}" if option else text, text)


def read_stream(stream: Any, name: str, *, limit: int = MAX_TEXT_BYTES) -> str:
    """The text of an open file (text or binary), at most ``limit`` characters or bytes: read in
    chunks, so a stream that never ends (an open ``/dev/zero``) is refused at the limit.

    Raises:
        InputFileError: over the limit, or bytes that are not UTF-8.
    """
    chunks: list = []
    size = 0
    while True:
        try:
            chunk = stream.read(min(_CHUNK, limit + 1 - size))
        except UnicodeDecodeError as err:  # a file opened as text: where, in its bytes, is unknown
            raise InputFileError(f"{name} is not UTF-8 text ({err.reason}): save it as UTF-8", name) from None
        if not chunk:
            break
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            raise InputFileError(f"{name} is over {_megabytes(limit)}: refused: give a smaller file", name)
    if not chunks:
        return ""
    if isinstance(chunks[0], bytes):
        return decode(b"".join(chunks), name)
    return "".join(chunks)
