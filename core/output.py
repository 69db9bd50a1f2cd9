"""What the commands put out: lines on the terminal and files, both safe with any data.

Terminal: rich reads ``[...]`` in a string as markup, so a tenant id ``acme[/bold]`` failed a
command after its work (``MarkupError``) and ``[red]t002`` printed as ``t002``. The commands'
consoles read no markup: ids, paths, model names and reasons are shown as written wherever they
go (f-string lines, table cells and titles, rules, the reports other modules print through the
console). Styled words are :class:`rich.text.Text` (``Text("ALERT", style="red")``).

Files: written to a temporary file beside the target, then moved over it, so a file appears whole
or not at all (``ulimit -f`` left a report cut at 102 of its 187 KB, without ``</html>``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def plain_console(stderr: bool = False, width: int | None = None) -> Console:
    """A rich console that shows every string as written (markup off); on stderr with
    ``stderr``, ``width`` columns wide when given (else the terminal's)."""
    # Imported on use: rich.console adds 0.04 s to `botfilter --help`.
    from rich.console import Console

    return Console(markup=False, stderr=stderr, width=width)


def write_whole(path: Path, write: Callable[[Path], object]) -> Path:
    """``path`` written by ``write(tmp)`` to a temporary file in its folder (same extension, so
    writers that go by it still can), then moved over it: readers and a failed or interrupted
    write (a full disk, a file-size limit, Ctrl-C) see the previous file, byte for byte, or the
    new one whole. Through a symbolic link, the file it points to is replaced. ``path``."""
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)):
            exc.filename = str(path)  # the one-line error names the user's file
        raise
    return Path(path)


def write_text_whole(path: Path, text: str) -> Path:
    """:func:`write_whole` of ``text`` as UTF-8."""
    return write_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
