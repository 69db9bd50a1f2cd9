"""The worker processes of ``botfilter score``, started before the caller's own imports: a
fork server that imports the scoring stack once (:func:`core.workers.start_pool`).

This module imports only the standard library (and ``core.workers``, which does too), so a
command can start the pool first: the fork server's imports (about 2 s of CPU) then run beside
the command's own instead of after them.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from core.workers import start_pool

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
    """The scoring stack's pool of ``workers`` processes (see :func:`core.workers.start_pool`),
    its fork server importing ``preload``."""
    return start_pool(workers, preload)
