"""The worker: ``botfilter run [--every 5m]``, a loop that can also run once from cron.

A cycle:

1. takes the store-wide ``worker`` lock (a second worker skips its cycle instead of doubling up);
2. fingerprints the data directory's tables: the name, size and modification time of each
   file the contract reads (``NAME.parquet|csv|jsonl`` for ``messages``, ``events``,
   ``segments``, ``settings``), so a replaced or appended ``events.parquet`` shows up. Other
   files that look like tables (``events-20261204.parquet``, ``extra.csv``, an ``events/``
   folder) are not read: a cycle names them in its line, once each, and they are no new data;
3. queues the recompute of each tenant's channels that a list entry stopped applying to since
   the last cycle looked (its expiry passed: the score, the API and the drill-down drop it at
   once, the metrics at this recompute; ``jobs.lists.storage.queue_expired``);
4. does nothing when the fingerprint is unchanged, no setting change is queued and the last full
   recompute is less than an hour old (the window moves with time);
5. otherwise recomputes, with ``as_of`` = now: every tenant and channel when the data changed or
   the hourly recompute is due, else only the queued (tenant, channel) pairs. Parquet tables are
   read through the contract in parts of whole tenants (``jobs.recompute.recompute_parts``):
   only the parts holding those tenants are validated, and memory follows the largest part;
   CSV and JSON Lines tables are loaded whole;
6. records itself as a ``cycle`` job run (each tenant's recompute has its own run, in the
   cycle's batch: ``batch_id`` is the cycle's ``run_id``). Stopped mid-way (SIGTERM, Ctrl-C:
   :class:`Stopped`), the cycle closes its runs still open, and those the interruption failed,
   as ``abandoned`` "stopped by SIGTERM", then lets the stop go on;
7. once a day, runs the drift monitor (``botfilter monitor``) on the directory against the
   champion and keeps its report under the data home, where the API's gauges read it.

Between cycles the loop polls the queue every few seconds, so a setting change is applied within
seconds of being made, well inside the product's hour; a tenant a cycle left because another run
held it is retried at the first poll that finds its lock free, and a list entry's expiry starts a
cycle at the first poll after it passes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from contract.counts import Report
from contract.parts import TenantParts
from contract.schema import CHANNELS, FILE_FORMATS, TABLES
from contract.tables import CleanTables
from core.errors import BotfilterError, is_user_error
from core.redact import redact
from core.settings import Settings
from core.signals import Stopped, stopped
from jobs.exclusions import sync_from_data
from jobs.recompute import (
    RecomputeOptions,
    RecomputeResult,
    Scorer,
    load_data,
    recompute,
    recompute_parts,
)
from jobs.store import LockTimeout, Store
from monitoring.run import run_monitor, save_if_champion
from scoring.registry import champion_version

FINGERPRINT = "data_fingerprint"
LAST_FULL = "last_full_recompute"
FULL_EVERY = timedelta(hours=1)
LAST_MONITOR = "last_drift_monitor"
MONITOR_EVERY = timedelta(days=1)
NOT_READ = "files_not_read"  # the files a cycle named as not read (each is named once)
# The clock time up to which list entries' expiries have been queued for recompute.
LISTS_EXPIRED = "lists_expired_until"
# What the contract reads of a data directory (contract.schema.find_table_files), for people.
TABLE_FILES = f"{', '.join(TABLES)} as NAME.{'|'.join(f.lstrip('.') for f in FILE_FORMATS)}"


def parse_every(value: str) -> timedelta:
    """A period like ``30s``, ``5m``, ``1h`` (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", value or "")
    if not match:
        raise BotfilterError(f"--every {value!r}: use a period like 30s, 5m or 1h")
    amount = float(match.group(1))
    seconds = amount * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if seconds <= 0:
        raise BotfilterError("--every must be longer than 0")
    if seconds > _LONGEST_EVERY_S:  # (a timer cannot wait longer; it was an OverflowError)
        raise BotfilterError(f"--every {value!r}: at most {_LONGEST_EVERY_S // 86400} days")
    return timedelta(seconds=seconds)


_LONGEST_EVERY_S = 365 * 86400


def _is_table(entry: Path) -> bool:
    """Whether the contract takes this entry of a data directory for a table: ``NAME.parquet``,
    ``NAME.csv`` or ``NAME.jsonl`` (extension in any case) as
    :func:`contract.schema.find_table_files` looks for them."""
    return entry.stem in TABLES and entry.suffix.lower() in FILE_FORMATS


def _entries(data_dir: Path) -> list[Path]:
    """The entries of a data directory, sorted (it must exist)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise BotfilterError(f"data directory not found: {data_dir}")
    return sorted(data_dir.iterdir())


def data_fingerprint(data_dir: Path) -> str:
    """A digest of the name, size and modification time of each table file of a data
    directory: what the contract reads, nothing else (:func:`not_read`)."""
    parts = []
    for path in _entries(data_dir):
        if _is_table(path):
            stat = path.stat()
            parts.append(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def not_read(data_dir: Path) -> list[str]:
    """The entries of a data directory that look like tables but that the contract does not
    read: any other name with a table's extension (``events-20261204.parquet``,
    ``extra.csv``, ``events.csv.gz``), and folders named for a table (``events/``). Hidden
    entries are left out (a writer's temporary files)."""
    names = []
    for path in _entries(data_dir):
        if path.name.startswith(".") or _is_table(path):
            continue
        folder = path.is_dir()
        table_like = any(s.lower() in FILE_FORMATS for s in path.suffixes)
        if table_like or (folder and path.name in TABLES):
            names.append(path.name + ("/" if folder else ""))
    return names


def _newly_not_read(store: Store, data_dir: Path) -> list[str]:
    """:func:`not_read`'s entries that no earlier cycle named (each is named once; one taken
    away and put back is named again)."""
    found = not_read(data_dir)
    said = store.get_state(NOT_READ)
    before = set(json.loads(said)) if said else set()
    if set(found) != before:
        with store.write() as conn:
            store.set_state(NOT_READ, json.dumps(found), conn)
    return [name for name in found if name not in before]


@dataclass(frozen=True)
class CycleOptions:
    """How every cycle of a worker loads and scores. The defaults: the contract's loader, and
    stored scores of the champion (``model_uri`` None) scoring what they miss."""

    #: Scores what the store lacks instead of the model (then the drift monitor does not run:
    #: there is no champion view to compare).
    scorer: Scorer | None = None
    model_version: str | None = None  # the label keying the ``scorer``'s stored scores
    model_uri: str | None = None  # the model to score with and to monitor; None: the champion
    load: Callable[[Path], CleanTables[pd.DataFrame]] = load_data


@dataclass
class CycleResult:
    """What one worker cycle did."""

    status: str  # idle | succeeded | failed | skipped
    reason: str
    run_id: str | None = None
    recomputed: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    results: list[RecomputeResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # queued tenants not in the data
    # tenants another run holds (a `botfilter recompute --tenant`): left for the next cycle
    busy: list[str] = field(default_factory=list)
    # entries of the data directory that look like tables but are not read, new this cycle
    not_read: list[str] = field(default_factory=list)
    seconds: float = 0.0
    drift: str = ""  # the daily drift monitor's outcome, when it ran this cycle
    # rows set aside by validation, per "table: reason" (PRODUCT.md: never silently dropped)
    quarantined: dict[str, int] = field(default_factory=dict)
    # the failure that is not the user's to fix (a bug, a worker process dying): `run` raises
    # it, so a failed cycle exits 1 as any internal failure does, and 2 only for the user's
    internal: Exception | None = None

    def line(self) -> str:
        """One line for the log (a line break in a message or a name becomes a space)."""
        done = ", ".join(f"{t}[{'+'.join(c)}]" for t, c in self.recomputed) or "-"
        text = f"{self.status}: {self.reason}; recomputed {done} in {self.seconds:.1f}s"
        if self.waiting:
            text += f"; waiting for data of {', '.join(self.waiting)}"
        if self.busy:
            text += f"; left for the next cycle (another run holds them): {', '.join(self.busy)}"
        if self.quarantined:
            said = ", ".join(f"{key} {n:,}" for key, n in sorted(self.quarantined.items()))
            text += f"; quarantined {sum(self.quarantined.values()):,} rows ({said})"
        if self.errors:
            text += f"; errors: {' | '.join(self.errors)}"
        if self.drift:
            text += f"; drift monitor: {self.drift}"
        if self.not_read:
            text += f"; not read (the tables are {TABLE_FILES}): {', '.join(self.not_read)}"
        return " ".join(text.splitlines())


def _targets(
    pending: pd.DataFrame, tenants: list[str], full: bool
) -> tuple[dict[tuple[str, ...], list[str]], list[str]]:
    """Tenants to recompute grouped by channel set, and queued tenants absent from the data."""
    present = set(tenants)
    wanted: dict[str, set[str]] = {t: set(CHANNELS) for t in tenants} if full else {}
    waiting = sorted(set(pending["tenant_id"]) - present)
    if not full:
        queued = zip(pending["tenant_id"].astype(str), pending["channel"].astype(str), strict=True)
        for tenant, channel in queued:
            if tenant in present:
                wanted.setdefault(tenant, set()).add(channel)
    groups: dict[tuple[str, ...], list[str]] = {}
    for tenant, chans in sorted(wanted.items()):
        key = tuple(c for c in CHANNELS if c in chans)
        groups.setdefault(key, []).append(tenant)
    return groups, waiting


def _held_elsewhere(store: Store, tenants: Iterable[str]) -> set[str]:
    """The tenants whose lock another run holds now. A recompute takes every tenant's lock of
    its scope, so one such tenant made the whole group wait (up to the store's lock timeout,
    15 minutes) and then fail, other tenants' queued changes with it."""
    held: set[str] = set()
    for tenant in sorted(set(tenants)):
        try:
            with store.locks([f"tenant:{tenant}"], timeout=0):
                pass
        except LockTimeout:
            held.add(tenant)
    return held


def _planned_tenants(parts: TenantParts | None) -> list[str] | None:
    """The tenants with messages in a directory read in parts, as planned (None: unknown)."""
    if parts is None or parts.tenants(0) is None:
        return None
    return sorted({t for i in range(len(parts)) for t in parts.tenants(i) or []})


def run_cycle(
    store: Store,
    settings: Settings,
    data_dir: Path,
    options: CycleOptions | None = None,
    *,
    now: datetime | None = None,
) -> CycleResult:
    """One cycle of the worker (see the module docstring) at ``now`` (default: the clock)."""
    options = options or CycleOptions()
    start = time.perf_counter()
    try:
        with store.locks(["worker"], timeout=0):
            result = _cycle(store, settings, Path(data_dir), now, options)
            # The monitor compares the champion's view with its training data: a cycle scoring
            # with an injected scorer has no champion view to compare.
            if options.scorer is None and result.status != "failed":
                result.drift = _monitor_if_due(
                    store, settings, Path(data_dir), now, options.model_uri
                )
    except LockTimeout:
        result = CycleResult("skipped", "another worker is running a cycle")
    result.seconds = time.perf_counter() - start
    return result


def _monitor_if_due(
    store: Store, settings: Settings, data_dir: Path, now: datetime | None, model_uri: str | None
) -> str:
    """Run the drift monitor when the last run is a day old; its outcome in a few words."""
    now = now or datetime.now(UTC)
    last = store.get_state(LAST_MONITOR)
    if last is not None and now - datetime.fromisoformat(last) < MONITOR_EVERY:
        return ""
    try:
        report = run_monitor(settings, data_dir, model_uri)
    except BotfilterError as exc:
        return f"not run: {exc}"
    champion = None if model_uri is None else champion_version(settings)
    save_if_champion(settings, report, model_uri, champion)  # run --model: not the gauges'
    with store.write() as conn:
        store.set_state(LAST_MONITOR, now.isoformat(), conn)
    alerts = report["alerts"]
    return f"{len(alerts)} alert(s)" + (f": {alerts[0]}" if alerts else "")


def _cycle(
    store: Store,
    settings: Settings,
    data_dir: Path,
    now: datetime | None,
    options: CycleOptions,
) -> CycleResult:
    now = now or datetime.now(UTC)
    _queue_expired(store)
    fingerprint = data_fingerprint(data_dir)
    unread = _newly_not_read(store, data_dir)
    changed = store.get_state(FINGERPRINT) != fingerprint
    last_full = store.get_state(LAST_FULL)
    due = last_full is None or now - datetime.fromisoformat(last_full) >= FULL_EVERY
    queued = store.has_pending()
    if not (changed or due or queued):
        return CycleResult("idle", "no new data, no queued setting change", not_read=unread)
    reason = "new data" if changed else ("hourly recompute" if due else "queued setting change")
    run_id = store.start_run("cycle", as_of=now)
    result = CycleResult("succeeded", reason, run_id, not_read=unread)
    events_in = rows_out = 0
    try:
        parts = TenantParts(data_dir) if options.load is load_data else None
        planned = _planned_tenants(parts)
        data = None
        if planned is None:  # CSV or JSON Lines (read whole anyway), or another loader
            data = options.load(data_dir)
            sync_from_data(store, data.settings)
            planned = sorted(data.messages["tenant_id"].unique())
        groups, result.waiting = _targets(store.pending(), planned, changed or due)
        held = _held_elsewhere(store, (t for group in groups.values() for t in group))
        if held:  # their queued changes stay pending: the next cycle takes them
            result.busy = sorted(held)
            groups = {
                k: kept for k, g in groups.items() if (kept := [t for t in g if t not in held])
            }
        for channels, group in groups.items():
            run = RecomputeOptions(
                as_of=pd.Timestamp(now),
                tenants=group,
                channels=channels,
                scorer=options.scorer,
                model_version=options.model_version,
                model_uri=options.model_uri,
                batch=run_id,  # the tenants' runs belong to the cycle's
            )
            try:
                if data is not None:
                    done = [recompute(store, settings, data, run)]
                    given = getattr(data, "report", None)
                    reports = [given] if isinstance(given, Report) else []
                else:
                    # Part by part: only the parts holding these tenants are validated, and
                    # memory follows the largest part; two or more such parts go to worker
                    # processes, as in `botfilter recompute`. The files are read once per group.
                    parts = parts if parts is not None and parts.fresh else TenantParts(data_dir)
                    workers = settings.recompute_workers
                    outcome = recompute_parts(store, settings, parts, run, workers)
                    reports, done = outcome.reports, outcome.results
            except BotfilterError as exc:
                result.errors.append(f"{','.join(group)}: {exc}")
                continue
            group_counts: dict[str, int] = {}
            for report in reports:
                for name, table in report.tables.items():
                    for why, n in table.quarantined.items():
                        key = f"{name}: {why}"
                        group_counts[key] = group_counts.get(key, 0) + n
            for key, n in group_counts.items():  # a part read for two groups counts once
                result.quarantined[key] = max(result.quarantined.get(key, 0), n)
            covered = {t for d in done for t in d.tenants}
            # no clean message (every one quarantined): waiting for data, as if absent
            result.waiting += [t for t in group if t not in covered]
            result.recomputed += [(t, channels) for t in group if t in covered]
            result.results += done
            events_in += sum(d.events_used for d in done)
            rows_out += sum(d.rows_written for d in done)
        if result.errors:
            result.status = "failed"
        elif not result.busy:  # a tenant left for the next cycle: the data stays new until then
            with store.write() as conn:
                store.set_state(FINGERPRINT, fingerprint, conn)
                if changed or due:
                    store.set_state(LAST_FULL, now.isoformat(), conn)
    except KeyboardInterrupt as exc:  # stopped (SIGTERM, Ctrl-C): the runs it cut short say so
        _stop_runs(store, run_id, exc)
        raise
    except Exception as exc:
        result.status = "failed"
        result.errors.append(redact(f"{type(exc).__name__}: {exc}".splitlines()[0]))
        if not is_user_error(exc):
            result.internal = exc
    store.finish_run(
        run_id,
        status=result.status,
        rows_in=events_in,
        rows_out=rows_out,
        error=" | ".join(result.errors) or None,
        detail={
            "reason": reason,
            "recomputed": result.recomputed,
            "waiting": result.waiting,
            "busy": result.busy,
            "quarantined": result.quarantined,
            "not_read": result.not_read,
        },
    )
    return result


def _queue_expired(store: Store) -> list[int]:
    """Queue the recompute of the tenants' channels whose list entries expired since the last
    cycle looked (:data:`LISTS_EXPIRED`; before the first look, since the last full recompute,
    which applied the lists in force then); the queue ids. The clock, not the cycle's ``now``:
    a recompute applies the lists in force when it runs (``jobs.lists.apply.apply_lists``)."""
    from jobs.lists.storage import expired, queue_expired

    until = datetime.now(UTC)
    said = store.get_state(LISTS_EXPIRED) or store.get_state(LAST_FULL)
    since = datetime.fromisoformat(said) if said else None
    with store.read() as conn:  # usually none: no write (the mark may stay behind then)
        if not expired(conn, since, until):
            return []
    with store.write() as conn:  # the queue entries and the mark, together
        queued = queue_expired(store, conn, since, until)
        store.set_state(LISTS_EXPIRED, until.isoformat(), conn)
    return queued


def _next_expiry(store: Store) -> datetime | None:
    """When the next list entry expires (None: none will, or the store cannot be reached)."""
    from jobs.lists.storage import next_expiry

    try:
        return next_expiry(store, datetime.now(UTC))
    except SQLAlchemyError:
        return None


def _stop_runs(store: Store, run_id: str, exc: KeyboardInterrupt) -> None:
    """Close the cycle's run and its tenants' runs that a stop cut short: ``abandoned``,
    "stopped by SIGTERM" (:meth:`Store.stop_batch`). With the store away, the next runs
    abandon them."""
    with contextlib.suppress(Exception):
        interrupted = (KeyboardInterrupt.__name__, Stopped.__name__)
        store.stop_batch(run_id, str(stopped(exc)), interrupted)


def _last_queue_id(store: Store) -> int:
    """The newest queue entry's id; -1 while the store cannot be reached (no early cycle)."""
    try:
        return store.last_queue_id()
    except SQLAlchemyError:
        return -1


def _freed(store: Store, busy: list[str]) -> bool:
    """Whether a tenant a cycle left because another run held it is free now (False while the
    store cannot be reached)."""
    try:
        return len(_held_elsewhere(store, busy)) < len(busy)
    except SQLAlchemyError:
        return False


def run_worker(
    store: Store,
    settings: Settings,
    data_dir: Path,
    every: timedelta | None = None,
    options: CycleOptions | None = None,
    *,
    now: datetime | None = None,
    poll: float = 5.0,
    stop: threading.Event | None = None,
    on_cycle: Callable[[CycleResult], None] | None = None,
) -> list[CycleResult]:
    """Run one cycle (``every`` unset: cron style), or loop until ``stop`` is set.

    While waiting for the next cycle, a newly queued setting change starts one early, and so
    do a tenant the last cycle left busy (``CycleResult.busy``) once its lock is free and a
    list entry's expiry once it passes: they are looked at every ``poll`` seconds. ``now`` fixes every cycle's clock (tests); by
    default each cycle reads the clock.
    """
    stop = stop or threading.Event()
    results = []
    seen = 0
    while True:
        try:
            seen = store.last_queue_id()
            result = run_cycle(store, settings, data_dir, options, now=now)
        except SQLAlchemyError as exc:
            if every is None:
                raise
            # The store is away (a restart, a network cut): this cycle fails in one line and
            # the loop tries again at its next period (it exited for good: an audit).
            result = CycleResult("failed", "the metrics store could not be reached")
            result.errors.append(redact(f"{type(exc).__name__}: {exc}".splitlines()[0]))
        results.append(result)
        if on_cycle is not None:
            on_cycle(result)
        if every is None:
            return results
        deadline = time.monotonic() + every.total_seconds()
        expiry = _next_expiry(store)
        while not stop.is_set() and time.monotonic() < deadline:
            if stop.wait(min(poll, max(deadline - time.monotonic(), 0))):
                break
            if _last_queue_id(store) > seen:  # a change queued since this cycle began
                break
            if expiry is not None and datetime.now(UTC) >= expiry:  # a list entry expired
                break
            if result.busy and _freed(store, result.busy):  # its changes wait no longer
                break
        if stop.is_set():
            return results
