"""``botfilter score`` of a data directory: the process that reads the files part by part
(whole tenants), hands each part to a worker process and writes the scores in the parts' order.

This process never scores with workers, so it imports nothing of the scoring stack (numba,
pandas, scipy, LightGBM: 0.4 CPU s that the workers' fork server spends once already): the
workers' own side is :mod:`scoring.batch`, which their fork server preloads, reached through the
two small functions here that import it where they run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from contract.counts import Report
from contract.parts import PART_EVENTS as READ_PART_EVENTS
from contract.parts import SharedTable, TenantParts, merge_reports, read_ipc, shm_dir
from scoring.registry import ModelRef, load_model, model_files, resolve_model
from scoring.scores_file import ScoresWriter
from scoring.workers import start_workers

if TYPE_CHECKING:  # annotations only: the workers' fork server never imports pydantic (0.15 s)
    from core.settings import Settings
    from scoring.model import BotModel

# Resident bytes a scoring process keeps between parts before it hands freed memory back (see
# give_back_memory): a worker's own ~400 MiB (modules, enrichers, model) and room to reuse.
KEEP_RESIDENT = 640 << 20


@dataclass
class ScoreRun:
    """What :func:`score_data_dir` did: the merged validation counts and the scores written."""

    report: Report
    events: int = 0
    bots: int = 0
    model_version: str = "-"


def score_data_dir(
    data_dir: Path,
    out: Path,
    settings: Settings,
    model_uri: str | None = None,
    model: BotModel | None = None,
    part_events: int | None = None,
    on_part: Callable[[int], None] | None = None,
    workers: int | None = None,
    pool: ProcessPoolExecutor | None = None,
) -> ScoreRun:
    """Validate and score a data directory part by part (whole tenants), writing as it goes.

    The scores are those of :func:`scoring.batch.score_validated` on the whole directory, in the order of the
    parts (the file's order when it is grouped by tenant); memory follows the largest part, not
    the file. ``workers`` processes (default ``settings.score_workers``) score parts side by
    side: validation and feature building hold the GIL, so threads could not share the cores.
    ``on_part`` is called with each part's event count. ``pool``: ``workers`` processes
    already started by :func:`scoring.workers.start_workers` (this call shuts them down when
    it is done).
    """
    try:
        writer = ScoresWriter(out)  # checks the extension before any work
        parts = TenantParts(
            data_dir, part_events or READ_PART_EVENTS, contract_only=True, dictionaries=True
        )
        workers = workers or settings.score_workers  # the size of a given pool
        if pool is None:
            workers = min(workers, len(parts))
            pool = start_workers(workers) if workers > 1 else None
        return _score_parts(writer, parts, settings, model_uri, model, on_part, workers, pool)
    finally:
        # On every way out: a pool left to the interpreter's exit prints a traceback there.
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _score_parts(
    writer: ScoresWriter,
    parts: TenantParts,
    settings: Settings,
    model_uri: str | None,
    model: BotModel | None,
    on_part: Callable[[int], None] | None,
    workers: int,
    pool: ProcessPoolExecutor | None,
) -> ScoreRun:
    """The body of :func:`score_data_dir`, which owns ``pool``."""
    # With workers, this process never reads the booster (LightGBM, with the sklearn and scipy it
    # imports, cost it about 2 s of CPU): it resolves the model and the workers load its files.
    ref: ModelRef | None = None
    if model is None and pool is None:
        model = load_model(settings, model_uri)
    elif model is None:
        ref = resolve_model(settings, model_uri)
    version = ref.version if ref is not None else model.version if model is not None else "-"
    reports: list[Report] = []
    run = ScoreRun(report=Report({}))

    def write(done: PartScores) -> None:
        writer.write(done.scores if isinstance(done.scores, pa.Table) else read_ipc(done.scores))
        reports.append(done.report)
        run.events += done.events
        run.bots += done.bots
        if done.events:
            run.model_version = version
        if on_part is not None:
            on_part(done.events)

    with writer:
        if pool is None:
            assert model is not None  # loaded above when there are no workers
            # One process does it all: the scoring stack is imported here, not by a worker.
            from contract.validate import CODED
            from features.pipeline import Enrichers
            from scoring.batch import score_part

            enrichers = Enrichers.load()
            for i in range(len(parts)):
                write(score_part(parts.raw(i, keep=CODED), model, enrichers))
        else:
            with tempfile.TemporaryDirectory(prefix="botfilter-score-", dir=shm_dir()) as tmp:
                if ref is not None:
                    shipped = ship_ref(ref, settings)
                else:
                    assert model is not None
                    shipped = ship_model(model, Path(tmp), settings)

                def shared_part(i: int) -> dict[str, SharedTable]:
                    return parts.share(i, Path(tmp) / f"part-{i}")

                # The first part is read before anything is asked of the pool: until the fork
                # server has warmed up (scoring.warm, ~2 s) and forked the workers, a submit
                # waits, and this process would wait with it instead of reading.
                ready = deque([shared_part(0)] if len(parts) else [])
                # One worker loads the model first, compiling it into the cache when the cache
                # lacks it: the others then load the compiled code instead of building it too.
                # A worker that failed to start fails here, not mid-way. Meanwhile this process
                # reads on, up to the parts the workers will hold at once (a core sat idle for
                # 0.6-0.9 s of `botfilter score` on 2.65M events while it waited).
                loading = pool.submit(_load_in_worker, shipped)
                while not loading.done() and len(ready) < min(workers + 1, len(parts)):
                    ready.append(shared_part(len(ready)))
                loading.result()
                pending: deque[Future[PartScores]] = deque()  # in the parts' order
                for i in range(len(parts)):
                    # This process reads the files once, in order, and hands each part's rows
                    # to a worker; at most one part waits beyond those being scored.
                    part = ready.popleft() if ready else shared_part(i)
                    give_back_memory()  # the part's Arrow buffers
                    scores_path = str(Path(tmp) / f"scores-{i}.arrow")
                    pending.append(pool.submit(_score_in_worker, shipped, part, scores_path))
                    _write_done(pending, workers, write)
                while pending:
                    write(pending.popleft().result())
    run.report = parts.settle(merge_reports(reports))
    return run


def _write_done(
    pending: deque[Future[PartScores]], workers: int, write: Callable[[PartScores], None]
) -> None:
    """Write the finished parts at the head of ``pending`` until at most ``workers`` parts are
    unfinished (the file keeps the parts' order).

    Waiting for the oldest part instead left a worker idle whenever a younger part finished
    first: it had nothing queued while this process waited. A finished part waits as its
    scores only (its input is gone), and at most ``4 * workers`` of them.
    """
    while True:
        while pending and pending[0].done():
            write(pending.popleft().result())
        running = [f for f in pending if not f.done()]
        if len(running) <= workers and len(pending) <= 4 * workers:
            return
        wait(running, return_when=FIRST_COMPLETED)  # the head is unfinished: running is not empty


@dataclass
class PartScores:
    scores: pa.Table | str  # str: an Arrow IPC file a worker wrote (see share_raw)
    report: Report
    events: int
    bots: int


@dataclass(frozen=True)
class ShippedModel:
    """Where a worker finds the caller's model: its files and the compiled-trees cache."""

    model_file: str
    metadata_file: str
    version: str
    threads: int
    compiled_cache: str | None
    model_id: str | None = None  # the registry's content id; None: computed from the files


def ship_ref(ref: ModelRef, settings: Settings) -> ShippedModel:
    """A resolved registry model as the workers load it (:func:`scoring.registry.load_ref`)."""
    model_file, meta_file = model_files(ref)
    cache = settings.models_dir / "compiled"
    return ShippedModel(
        str(model_file), str(meta_file), ref.version, settings.threads, str(cache), ref.model_id
    )


def ship_model(model: BotModel, tmp: Path, settings: Settings) -> ShippedModel:
    model.booster.save_model(str(tmp / "model.lgb"))
    (tmp / "metadata.json").write_text(json.dumps(model.metadata()))
    compiled = model._compiled is not None or model._explainer is not None
    cache = settings.models_dir / "compiled" if compiled else None  # load_model compiled there
    return ShippedModel(
        str(tmp / "model.lgb"), str(tmp / "metadata.json"), model.version, model.threads,
        str(cache) if cache else None,
    )  # fmt: skip


def _load_in_worker(shipped: ShippedModel) -> None:
    """:func:`scoring.batch.load_shipped`, run in a worker (whose fork server imported it)."""
    from scoring.batch import load_shipped

    load_shipped(shipped)


def _score_in_worker(
    shipped: ShippedModel, shared: dict[str, SharedTable], scores_path: str
) -> PartScores:
    """:func:`scoring.batch.score_shipped_part`, run in a worker."""
    from scoring.batch import score_shipped_part

    return score_shipped_part(shipped, shared, scores_path)


def give_back_memory(keep: int = KEEP_RESIDENT) -> None:
    """Hand freed memory back to the system once this process holds more than ``keep`` bytes.

    Arrow's allocator (mimalloc) and glibc's heap keep what a part freed, and the next part's
    frames, allocated by the other one, sat beside it (a worker grew by ~70 MiB per part on the
    2.65M-event world), so memory must go back. But handing it all back after every part made
    the next part fault every page in again: 1.46M page faults for `botfilter score` on that
    world, 6.6 s of system CPU. Keeping up to ``keep`` resident between parts reuses it: 0.61M
    faults, 4.2 s, and the command's CPU x0.91, wall x0.94 (four runs each, alternating), while
    memory stays bounded by ``keep`` plus a part.
    """
    resident = _resident_bytes()
    if resident is not None and resident <= keep:
        return
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _resident_bytes() -> int | None:
    """This process's resident set; None where /proc is missing (memory is then always handed
    back)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # glibc only (not musl, macOS)
    except OSError:
        return None
