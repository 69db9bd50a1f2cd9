"""Checks on output paths, made before any work so that a bad ``--out`` fails in one line."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from .errors import BotfilterError


def check_out_dir(path: Path, option: str = "--out") -> Path:
    """``path`` can be a directory we write into: an existing directory, or creatable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BotfilterError(f"{option} {path}: is a file, not a directory")
    _check_parent(path, option)
    return path


def check_out_file(path: Path, option: str = "--out") -> Path:
    """``path`` can be a file we write: not a directory, and its parent creatable."""
    path = Path(path)
    if path.is_dir():
        raise BotfilterError(f"{option} {path}: is a directory, give a file name")
    _check_parent(path, option)
    return path


def check_apart(out: Path, data: Path, option: str = "--out", other: str = "--data") -> None:
    """``out`` is neither ``data`` nor inside it nor around it (writing there would mix or
    overwrite the input)."""
    a, b = Path(out).resolve(), Path(data).resolve()
    if a == b or b in a.parents or a in b.parents:
        raise BotfilterError(
            f"{option} {out}: must be apart from {other} {data} (not it, in it or around it)"
        )


def check_distinct(outputs: Mapping[str, Path]) -> None:
    """No two output options (option -> path) name one file: the one written last replaced the
    other (``label --out x --report x`` left the report where the labels were). Compared
    resolved, as :func:`core.output.write_whole` writes them: ``x``, ``./x`` and a link to
    ``x`` are one file."""
    seen: dict[str, tuple[str, Path]] = {}
    for option, path in outputs.items():
        target = os.path.realpath(path)
        if target in seen:
            first, given = seen[target]
            raise BotfilterError(
                f"{option} {path}: the same file as {first} {given}; give each its own file"
            )
        seen[target] = (option, Path(path))


def check_out_files(
    outputs: Mapping[str, Path | None], data: Path | None = None, other: str = "--data"
) -> None:
    """Before any work, the output files a command was given (option -> path, None: not
    given): each one we can write (:func:`check_out_file`), apart from the input directory
    ``data`` (:func:`check_apart`; ``other`` is its option) and none given twice
    (:func:`check_distinct`)."""
    given = {option: Path(path) for option, path in outputs.items() if path is not None}
    for option, path in given.items():
        check_out_file(path, option)
        if data is not None:
            check_apart(path, data, option, other)
    check_distinct(given)


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` is a directory we can create files in."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BotfilterError(f"{option} {path}: {ancestor} is a file, not a directory")
    # Tried, not asked: os.access says yes to root everywhere, also where the file system
    # refuses (/proc, a read-only mount), and the command then failed after all its work.
    try:
        fd, probe = tempfile.mkstemp(prefix=".botfilter-probe-", dir=ancestor)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise BotfilterError(f"{option} {path}: cannot write in {ancestor} ({why})") from exc
    os.close(fd)
    os.unlink(probe)


def as_uri_or_path(path: str | Path) -> str:
    """The path as given, with a URI's ``//`` restored if a ``pathlib.Path`` collapsed it
    (``Path("s3a://bucket/x")`` prints as ``s3a:/bucket/x``)."""
    text = str(path)
    found = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]+):(/[^/].*)$", text)
    if found and not Path(text).exists():
        scheme, rest = found.groups()
        # file:///tmp/x became file:/tmp/x (empty authority); s3a://bucket/x became s3a:/bucket/x
        return f"{scheme}://{rest}" if scheme.lower() == "file" else f"{scheme}:/{rest}"
    return text


def local_path(path: str | Path) -> Path | None:
    """The local file a plain path or ``file:`` URI names; None for another file system
    (Spark's Hadoop paths: ``s3a://``, ``hdfs://``...)."""
    text = as_uri_or_path(path)
    if "://" not in text:
        return Path(text)
    if text.lower().startswith("file://"):
        return Path(url2pathname(urlparse(text).path))
    return None
