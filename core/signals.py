"""Stopping by signal: SIGTERM (a service manager, ``kill``) ends a command the way Ctrl-C does.

Python's default SIGTERM ends the process at once: no ``finally`` block, no ``except`` that
closes a run, no ``atexit`` handler. So a ``recompute`` stopped by its scheduler left its job
runs "running" for the console to show, and a Spark ``score`` left its validated copy of the
input in the temporary directory. Within :func:`stop_on_signals` such a signal raises
:class:`Stopped`, a ``KeyboardInterrupt``, which every clean-up already handles.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Stopped(KeyboardInterrupt):
    """Stopped by a signal: SIGTERM (a service manager) or SIGINT (Ctrl-C)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = signal.Signals(signum)
        super().__init__(f"stopped by {self.signum.name}")

    @property
    def exit_code(self) -> int:
        """The shell's status for a process ended by the signal: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + int(self.signum)


def stopped(exc: BaseException) -> Stopped:
    """``exc`` as a :class:`Stopped`: a plain KeyboardInterrupt is Python's own for Ctrl-C."""
    return exc if isinstance(exc, Stopped) else Stopped(signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(*signums: int) -> Iterator[list[Stopped]]:
    """Within the block (main thread), each of ``signums`` (SIGTERM, SIGINT) raises
    :class:`Stopped`. Only the first: a signal repeated while runs are being closed is ignored.
    Yields a list that then holds the :class:`Stopped` raised (a command-line parser may turn the
    exception into an exit status). The previous handlers come back after the block."""
    raised: list[Stopped] = []

    def stop(signum: int, _frame: object) -> None:
        if not raised:
            raised.append(Stopped(signum))
            raise raised[0]

    previous = {signum: signal.signal(signum, stop) for signum in signums}
    try:
        yield raised
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
