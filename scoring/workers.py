"""The worker processes of ``botfilter score``, started before the caller's own imports.

Workers come from a fork server: a fresh process that imports the scoring stack once, then
forks a worker per slot. Forking the caller instead would be cheaper but is unsafe: LightGBM
terminates a child forked from a process that has used OpenMP (any process that trained or
predicted), and the caller may hold threads and database connections.

This module imports only the standard library, so a command can start the pool first: the fork
server's imports (about 2 s of CPU) then run beside the command's own instead of after them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

# Not LightGBM here: its plain import brings scikit-learn (1.2 s). scoring.warm imports it without
# (scoring.model.import_lightgbm_lean), builds the enrichers and loads the compiled kernels in the
# fork server, once for every worker. Importing it starts no OpenMP thread, so forking after it is
# safe; the workers are the first to predict.
PRELOAD = (
    "contract.parts",
    "contract.validate",
    "features.pipeline",
    "scoring.batch",
    "scoring.warm",
)


def start_workers(workers: int, preload: tuple[str, ...] = PRELOAD) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes whose start is under way when this returns; the fork
    server imports ``preload`` once, before forking them.

    The processes are launched from a thread: launching one waits until the fork server has
    imported ``PRELOAD`` (it forks only then), which kept the caller from its own imports for
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
