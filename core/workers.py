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
