"""Worker processes for commands that split their work into parts, started before the
caller's own imports (the standard library only, so a command can start them first).

Workers come from a fork server: a fresh process that imports the given modules once, then
forks a worker per slot. Forking the caller instead would be cheaper but is unsafe: LightGBM
terminates a child forked from a process that has used OpenMP, and the caller may hold threads
and database connections.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor


def start_pool(workers: int, preload: Sequence[str]) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes whose start is under way when this returns; the fork
    server imports the modules ``preload`` names once, before forking them.

    The processes are launched from a thread: launching one waits until the fork server has
    imported ``preload`` (it forks only then), which kept the caller from its own imports for
    those seconds.
    """
    # The fork server runs `python -c`, which puts the current directory first on sys.path, and
    # Python 3.11's fork server ignores the caller's sys.path: a `core/` or `features/` folder
    # where the command was typed would shadow botfilter's own packages in every worker. Its
    # children inherit the environment; PYTHONSAFEPATH (3.11+) leaves the directory out.
    os.environ["PYTHONSAFEPATH"] = "1"
    context = multiprocessing.get_context("forkserver")
    _restart_for(list(preload))
    context.set_forkserver_preload(list(preload))
    pool = ProcessPoolExecutor(workers, mp_context=context)

    def launch() -> None:
        try:
            for _ in range(workers):
                pool.submit(os.getpid)  # a pool starts its processes on demand: ask for all
        except RuntimeError:
            pass  # the caller shut the pool down first (it failed early): nothing to start

    threading.Thread(target=launch, name="start-workers", daemon=True).start()
    return pool


def _restart_for(preload: list[str]) -> None:
    """Stop this process's fork server if it runs with other modules preloaded: there is one per
    process, and a new preload applies only to a server not yet started. A long-lived process
    (the worker loop, the demo, a test session) whose first pool validated files then scored
    without the scoring stack warm in its workers (1.4 CPU s each). Workers already forked keep
    running; the next process a pool starts comes from a server started with ``preload``."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the process's one server (CPython's module-level instance)
    running = getattr(server, "_forkserver_pid", None) is not None
    if running and getattr(server, "_preload_modules", preload) != preload:
        # CPython's own way to stop it (its tests use it); the next process starts a new one
        server._stop()  # type: ignore[attr-defined]
