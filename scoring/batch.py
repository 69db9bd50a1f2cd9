"""Batch scoring: validated tables in, the scores table out."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contract.counts import Report
from contract.parts import PART_EVENTS as READ_PART_EVENTS
from contract.parts import (
    SharedTable,
    TenantParts,
    merge_reports,
    read_ipc,
    shm_dir,
    unshare_raw,
    write_ipc,
)
from contract.schema import EVENTS, MESSAGE_CONTEXT
from contract.validate import CODED, validate_raw_arrow
from features.coded import Coded, as_objects, rows_of
from features.pipeline import (
    CONTEXT_COLUMNS,
    Enrichers,
    context_arrays,
    context_arrays_arrow,
    event_context,
    factorize,
    feature_block,
    warm_up,
)
from scoring.model import BotModel, ScoredRows, import_lightgbm_lean
from scoring.registry import ModelRef, load_model, model_files, resolve_model
from scoring.scores_file import ScoresWriter
from scoring.workers import start_workers

if TYPE_CHECKING:  # annotations only: the workers' fork server never imports pydantic (0.15 s)
    from core.settings import Settings

# Tenants are packed into parts of about this many events. Features never look across tenants,
# so parts are independent: while one part is scored (compiled code, no GIL), the next part's
# features are built, and the two stages share the cores instead of taking turns.
PART_EVENTS = 150_000
# Resident bytes a scoring process keeps between parts before it hands freed memory back (see
# _give_back_memory): a worker's own ~400 MiB (modules, enrichers, model) and room to reuse.
KEEP_RESIDENT = 640 << 20
# What scoring reads of a part's clean tables: the events' context columns, and of each message
# only its context (validation says which message an event names). Validation builds Python
# objects of no other column (url and the training labels of events, the messages' own ids,
# segments).
SCORED_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": tuple(c for c in EVENTS.names if c in CONTEXT_COLUMNS),
    "messages": tuple(c for c in MESSAGE_CONTEXT if c not in ("tenant_id", "message_id")),
    "segments": (),  # validated and counted, never scored
}


def tenant_parts(tenant_id: np.ndarray | Coded, part_events: int = PART_EVENTS) -> list[np.ndarray]:
    """Row positions grouped into parts of whole tenants, each about ``part_events`` rows.

    A tenant larger than ``part_events`` is a part of its own; rows keep their relative order.
    """
    plain = tenant_id if isinstance(tenant_id, Coded) else np.asarray(tenant_id, dtype=object)
    codes, uniques = factorize(plain)
    codes[codes < 0] = len(uniques)  # a missing tenant is one tenant of its own
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=len(uniques) + 1)
    ends = np.cumsum(sizes)
    parts, start, filled = [], 0, 0
    for end, size in zip(ends, sizes, strict=True):
        filled += size
        if filled >= part_events:
            parts.append(order[start:end])
            start, filled = end, 0
    if start < len(order):
        parts.append(order[start:])
    return parts


def _rows_index(rows: np.ndarray) -> np.ndarray | slice:
    """``rows`` as a slice when they are one ascending run (a frame grouped by tenant, as
    exports and the parts of ``botfilter score`` are): a view instead of a copy of every column."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and bool((np.diff(rows) == 1).all()):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def score_context(
    ctx: pd.DataFrame,
    model: BotModel,
    enrichers: Enrichers,
    with_reasons: bool = True,
    part_events: int = PART_EVENTS,
) -> pd.DataFrame:
    """Features and scores for an event-context frame, in its row order.

    Identical to building the features of the whole frame and scoring them in one call (a
    tested invariant): the frame is only cut between tenants.
    """
    cols, out = _score_rows(ctx, model, enrichers, with_reasons, part_events)
    # tenant_id too: an event id is unique only within its tenant (PRODUCT.md).
    return out.table(cols["event_id"], model.version, cols["tenant_id"])


def score_context_arrow(ctx: pd.DataFrame, model: BotModel, enrichers: Enrichers) -> pa.Table:
    """:func:`score_context` as the Arrow table a scores file holds (``tenant_id`` second)."""
    return score_arrays_arrow(context_arrays(ctx), model, enrichers)


def score_arrays_arrow(cols: dict, model: BotModel, enrichers: Enrichers) -> pa.Table:
    """The scores of context columns (:func:`features.pipeline.context_arrays` or
    ``context_arrays_arrow``) as the Arrow table a scores file holds (``tenant_id`` second),
    built from the scored arrays without a pandas frame in between."""
    out = _score_cols(cols, model, enrichers, True, PART_EVENTS)
    return out.arrow_table(cols["event_id"], model.version, as_objects(cols["tenant_id"]))


def _score_rows(
    ctx: pd.DataFrame, model: BotModel, enrichers: Enrichers, with_reasons: bool, part_events: int
) -> tuple[dict[str, np.ndarray], ScoredRows]:
    """The context's columns and their scores (the body of :func:`score_context`)."""
    cols = context_arrays(ctx)
    return cols, _score_cols(cols, model, enrichers, with_reasons, part_events)


def _score_cols(
    cols: dict, model: BotModel, enrichers: Enrichers, with_reasons: bool, part_events: int
) -> ScoredRows:
    """Scores of context columns in their row order, part by part (whole tenants)."""
    n = len(cols["event_id"])
    parts = tenant_parts(cols["tenant_id"], part_events) if n else []
    out = ScoredRows(
        np.empty(n),
        np.empty(n, dtype=bool),
        np.empty(n, dtype=object),
        np.empty(n, dtype=object),
        np.empty(n, dtype=np.int64),
    )

    def collect(rows: np.ndarray, future: Future[ScoredRows]) -> None:
        scored = future.result()
        out.bot_score[rows] = scored.bot_score
        out.is_bot[rows] = scored.is_bot
        out.reasons[rows] = scored.reasons
        out.bot_kind[rows] = scored.bot_kind
        out.reason_codes[rows] = scored.reason_codes

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-part") as scorer:
        pending: tuple[np.ndarray, Future[ScoredRows]] | None = None
        for rows in parts:
            sub = {name: rows_of(values, _rows_index(rows)) for name, values in cols.items()}
            block = feature_block(sub, enrichers)
            if pending is not None:
                collect(*pending)  # at most one part waits, so memory stays bounded
            channel, event_type = as_objects(sub["channel"]), as_objects(sub["type"])
            future = scorer.submit(
                model.score_block, block, channel, event_type, with_reasons=with_reasons
            )
            pending = (rows, future)
        if pending is not None:
            collect(*pending)
    return out


def score_validated(
    validated,
    settings: Settings,
    model_uri: str | None = None,
    model: BotModel | None = None,
    enrichers: Enrichers | None = None,
) -> pd.DataFrame:
    """Score every clean event of a validated data directory with the champion (or ``model_uri``)."""
    model = model or load_model(settings, model_uri)
    ctx = event_context(validated.messages, validated.events)
    return score_context(ctx, model, enrichers or Enrichers.load())


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

    The scores are those of :func:`score_validated` on the whole directory, in the order of the
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

    def write(done: _PartScores) -> None:
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
            enrichers = Enrichers.load()
            for i in range(len(parts)):
                write(_score_part(parts.raw(i, keep=CODED), model, enrichers))
        else:
            with tempfile.TemporaryDirectory(prefix="botfilter-score-", dir=shm_dir()) as tmp:
                if ref is not None:
                    shipped = _ship_ref(ref, settings)
                else:
                    assert model is not None
                    shipped = _ship_model(model, Path(tmp), settings)

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
                loading = pool.submit(_load_shipped, shipped)
                while not loading.done() and len(ready) < min(workers + 1, len(parts)):
                    ready.append(shared_part(len(ready)))
                loading.result()
                pending: deque[Future[_PartScores]] = deque()  # in the parts' order
                for i in range(len(parts)):
                    # This process reads the files once, in order, and hands each part's rows
                    # to a worker; at most one part waits beyond those being scored.
                    part = ready.popleft() if ready else shared_part(i)
                    _give_back_memory()  # the part's Arrow buffers
                    scores_path = str(Path(tmp) / f"scores-{i}.arrow")
                    pending.append(pool.submit(_score_shipped_part, shipped, part, scores_path))
                    _write_done(pending, workers, write)
                while pending:
                    write(pending.popleft().result())
    run.report = parts.settle(merge_reports(reports))
    return run


def _write_done(
    pending: deque[Future[_PartScores]], workers: int, write: Callable[[_PartScores], None]
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
class _PartScores:
    scores: pa.Table | str  # str: an Arrow IPC file a worker wrote (see share_raw)
    report: Report
    events: int
    bots: int


def _score_part(raws: dict, model: BotModel, enrichers: Enrichers) -> _PartScores:
    # Arrow from the files to the features: text reaches them as codes (features.coded)
    validated = validate_raw_arrow(raws, referenced_only=True, columns=SCORED_COLUMNS)
    del raws
    assert validated.event_messages is not None  # given with referenced_only
    tables = validated.tables
    cols = context_arrays_arrow(tables["events"], tables["messages"], validated.event_messages)
    report = validated.report
    del validated, tables
    table = score_arrays_arrow(cols, model, enrichers)
    del cols  # the rows carry tenant_id: event ids are unique within a tenant only
    return _PartScores(table, report, table.num_rows, pc.sum(table["is_bot"]).as_py() or 0)


# --- worker processes (started by scoring.workers) ----------------------------------------------


@dataclass(frozen=True)
class _ShippedModel:
    """Where a worker finds the caller's model: its files and the compiled-trees cache."""

    model_file: str
    metadata_file: str
    version: str
    threads: int
    compiled_cache: str | None
    model_id: str | None = None  # the registry's content id; None: computed from the files


def _ship_ref(ref: ModelRef, settings: Settings) -> _ShippedModel:
    """A resolved registry model as the workers load it (:func:`scoring.registry.load_ref`)."""
    model_file, meta_file = model_files(ref)
    cache = settings.models_dir / "compiled"
    return _ShippedModel(
        str(model_file), str(meta_file), ref.version, settings.threads, str(cache), ref.model_id
    )


def _ship_model(model: BotModel, tmp: Path, settings: Settings) -> _ShippedModel:
    model.booster.save_model(str(tmp / "model.lgb"))
    (tmp / "metadata.json").write_text(json.dumps(model.metadata()))
    compiled = model._compiled is not None or model._explainer is not None
    cache = settings.models_dir / "compiled" if compiled else None  # load_model compiled there
    return _ShippedModel(
        str(tmp / "model.lgb"), str(tmp / "metadata.json"), model.version, model.threads,
        str(cache) if cache else None,
    )  # fmt: skip


_WORKER: dict = {}  # per worker process: the enrichers, then the model of the first part


def warm_worker() -> None:
    """Import LightGBM (without scikit-learn), build this process's enrichers (IP ranges,
    User-Agent patterns: about a second) and load the compiled feature kernels (about 0.6 s),
    once: the fork server does it before forking the workers (:mod:`scoring.warm`), which then
    find them done."""
    if "enrichers" not in _WORKER:
        import_lightgbm_lean()  # a worker only scores: every worker needs it for its model
        enrichers = Enrichers.load()
        _ = enrichers.ip, enrichers.ua  # cached properties: built here, not at the first part
        warm_up(enrichers)
        _WORKER["enrichers"] = enrichers


def _load_shipped(shipped: _ShippedModel) -> None:
    """This worker's model (and enrichers), loaded once per shipped model."""
    if _WORKER.get("shipped") != shipped:
        warm_worker()  # done by the fork server unless its warm-up failed
        model = BotModel.from_files(
            Path(shipped.model_file), Path(shipped.metadata_file), shipped.version, shipped.threads
        )
        if shipped.model_id is not None:
            model.model_id = shipped.model_id
        if shipped.compiled_cache:
            model.compile(Path(shipped.compiled_cache))
        _WORKER.update(shipped=shipped, model=model)


def _score_shipped_part(
    shipped: _ShippedModel, shared: dict[str, SharedTable], scores_path: str
) -> _PartScores:
    """Score a shared part; the scores go back the way the part came, as a file in memory."""
    _load_shipped(shipped)
    raws = unshare_raw(shared, keep=CODED)  # validation takes those as dictionaries
    scored = _score_part(raws, _WORKER["model"], _WORKER["enrichers"])
    assert isinstance(scored.scores, pa.Table)  # _score_part's scores are a table
    write_ipc(scored.scores, scores_path)
    _give_back_memory()
    return replace(scored, scores=scores_path)


def _give_back_memory(keep: int = KEEP_RESIDENT) -> None:
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
