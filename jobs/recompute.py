"""The batch recompute: data (via the contract) + scores -> metric partitions -> the store.

One call recomputes the window of some tenants (default: every tenant in the data) for some
channels (default: both): it takes each tenant's lock, records a job run per tenant, resolves the
scores (a scores file, stored scores of the current model version, or fresh scoring of what is
missing), computes the partitions with :mod:`jobs.metrics`, and writes each tenant's partitions,
applied queue entries and finished job run in one transaction.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.exc import SQLAlchemyError

import contract
from contract.columns import TS_MAX, TS_MIN, parse_text
from contract.counts import Report
from contract.parts import SharedTable, TenantParts, merge_reports, shm_dir, unshare_raw
from contract.readers import column_from_values, write_parquet
from contract.schema import CHANNELS, SCORE_COLUMNS
from contract.streamed import settled_quarantine
from contract.tables import CleanTables, Tables
from contract.validate import validate_raw
from core.errors import BotfilterError
from core.output import write_whole
from core.paths import check_out_dir
from core.redact import redact
from core.settings import Settings
from features.definitions import LONGEST_WINDOW_S
from features.pipeline import window_passed
from jobs.exclusions import sync_from_data
from jobs.lists.apply import apply_lists, default_asn_lookup
from jobs.lists.rules import REASONS
from jobs.metrics import (
    COUNTS,
    MODULES,
    PRODUCT_TABLES,
    RATES,
    MissingScores,
    Partitions,
    Window,
    compute_partitions,
    event_positions,
    key_positions,
    to_utc,
    top_reasons,
)
from jobs.store import Store
from jobs.store.scores import PROVISIONAL
from jobs.store.window_events import build as build_window_events

if TYPE_CHECKING:
    from rich.console import Console

    from contract.validate import Validated
    from features.pipeline import Enrichers
    from scoring.model import BotModel
    from scoring.registry import ModelRef


class Scorer(Protocol):
    """Scores clean tables: a scores table (``SCORE_COLUMNS``, ``tenant_id`` optional) with a row
    for every event of ``tables.events``, as :func:`scoring.batch.score_validated` returns it."""

    def __call__(self, tables: CleanTables[pd.DataFrame], /) -> pd.DataFrame: ...


class Engine(Protocol):
    """Computes the partitions: :func:`jobs.metrics.compute_partitions` (pandas) or
    :func:`jobs.spark.engine.partitions_engine` (Spark), same inputs, same result."""

    def __call__(
        self,
        messages: pd.DataFrame,
        events: pd.DataFrame,
        scores: pd.DataFrame,
        exclusions: Mapping[tuple[str, str], bool],
        window: Window,
        segments: pd.DataFrame | None = ...,
        tenants: Sequence[str] | None = ...,
        channels: Sequence[str] = ...,
    ) -> Partitions: ...


@dataclass(frozen=True)
class RecomputeOptions:
    """What one :func:`recompute` covers, where its scores come from and what else it does.

    The defaults: every tenant in the data, both channels, the window ending now, stored scores
    of the champion (scoring what they miss), the pandas engine, nothing written but the store.
    """

    as_of: pd.Timestamp | str | None = None  # end of the window; None: now
    tenants: Sequence[str] | None = None  # None: every tenant with messages in the data
    channels: Sequence[str] = CHANNELS
    #: A scores file's table: used for this run only, never stored (see :func:`resolve_scores`).
    scores: pd.DataFrame | None = None
    #: Scores what the store lacks, instead of the model of ``model_uri``.
    scorer: Scorer | None = None
    #: Label and content id of the model in use; with a ``scorer``, the key of its stored scores.
    model_version: str | None = None
    model_id: str | None = None
    model_uri: str | None = None  # None: the champion alias
    out: Path | None = None  # also write the four product tables there as Parquet
    progress: bool = False  # show the stages as a rich progress bar
    console: Console | None = None  # where the progress bar goes (None: rich's default)
    lock_timeout: float | None = None  # seconds to wait for the tenants' locks; None: forever
    engine: Engine = compute_partitions
    #: The job runs' batch id; None: a new one. A recompute in parts gives every part the same.
    batch: str | None = None


@dataclass
class RecomputeResult:
    """What one recompute did."""

    window: Window
    tenants: tuple[str, ...]
    channels: tuple[str, ...]
    tables: dict[str, pd.DataFrame]
    run_ids: dict[str, str]
    events_used: int
    rows_written: int
    queue_applied: int
    scores_source: str
    model_versions: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


class Stages:
    """Times named stages and, when ``progress`` is on, shows them as a rich progress bar."""

    def __init__(
        self, names: Sequence[str], progress: bool = False, console: Console | None = None
    ):
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # this process's CPU seconds per stage
        self._bar = None
        if progress:
            # Lazy: 0.13 s of import that the worker, which shows no bar, never pays.
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description:<28}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} stages"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._task = self._bar.add_task("recompute", total=len(names))

    def __enter__(self) -> Stages:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._bar is not None:
            self._bar.update(self._task, description=name)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
            if self._bar is not None:
                self._bar.advance(self._task)


# --- scores -----------------------------------------------------------------------------------


# Ids read as text: "007" stays "007". Keyed by Hashable, as pandas-stubs' dtype mappings are.
_SCORE_TEXT: dict[Hashable, type[str]] = {"tenant_id": str, "event_id": str, "model_version": str}


def read_scores_file(path: Path) -> pd.DataFrame:
    """A scores table (Parquet, CSV or JSON Lines by extension), checked and typed."""
    path = Path(path)
    if not path.is_file():
        raise BotfilterError(f"scores file not found: {path}")
    try:
        if path.suffix == ".parquet":
            # List columns (reasons) stay Arrow-backed: no million small Python lists.
            frame = pq.read_table(path).to_pandas(
                types_mapper=lambda t: pd.ArrowDtype(t) if _is_list(t) else None
            )
        elif path.suffix == ".csv":
            # Only an empty field is missing: "NA" or "null" is a tenant's or an event's id
            frame = pd.read_csv(path, dtype=_SCORE_TEXT, keep_default_na=False, na_values=[""])
        elif path.suffix == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=_SCORE_TEXT)
        else:
            raise BotfilterError(f"{path}: scores must be .parquet, .csv or .jsonl")
    except BotfilterError:
        raise
    except Exception as exc:
        raise BotfilterError(f"cannot read scores file {path}: {exc}") from exc
    return check_scores(frame, str(path))


def _is_list(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)


def check_scores(frame: pd.DataFrame, source: str = "scores") -> pd.DataFrame:
    """The scores table with its columns typed (and ``tenant_id`` when it has one); a clear
    one-line error for what cannot be used."""
    if "bot_kind" not in frame.columns:  # scores from before the kind head, or another system
        frame = frame.assign(bot_kind="")
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise BotfilterError(f"{source}: missing column {missing[0]} (needs {SCORE_COLUMNS})")
    keep = [*SCORE_COLUMNS, *(["tenant_id"] if "tenant_id" in frame.columns else [])]
    out = frame[keep].copy()
    # ids as the data contract reads the data's: " 0001 " is the event 0001
    for name in ("event_id", "tenant_id") if "tenant_id" in out.columns else ("event_id",):
        out[name] = _contract_ids(out[name], name, source)
    out["bot_kind"] = out["bot_kind"].fillna("").astype(str)
    out["model_version"] = out["model_version"].astype(str)
    is_bot = out["is_bot"]
    if is_bot.dtype == object:
        is_bot = (
            is_bot.astype(str)
            .str.lower()
            .map({"true": True, "false": False, "1": True, "0": False})
        )
    if is_bot.isna().any():
        raise BotfilterError(f"{source}: is_bot must be true or false on every row")
    out["is_bot"] = is_bot.astype(bool)
    out["bot_score"] = pd.to_numeric(out["bot_score"], errors="coerce")
    if out["bot_score"].isna().any() or not out["bot_score"].between(0, 1).all():
        raise BotfilterError(f"{source}: bot_score must be a number in [0, 1] on every row")
    # PRODUCT.md: is_bot is never true below a calibrated 0.5, by the model: a tenant's block
    # list decides against it (the lists override the model; bot_score stays the model's).
    # Those rows were refused, so a file of `botfilter score` with a block entry could not be
    # read back, and Spark's recompute failed on any tenant with one (an audit).
    block = REASONS["block"]
    firsts = top_reasons(out["reasons"])  # (text reasons: the whole text, "a;b" in a CSV)
    listed = np.array([isinstance(r, str) and r.startswith(block) for r in firsts], dtype=bool)
    low = out["is_bot"].to_numpy() & (out["bot_score"].to_numpy() < 0.5) & ~listed
    if low.any():
        raise BotfilterError(
            f"{source}: {int(low.sum())} rows have is_bot=true with bot_score below 0.5 "
            f"(e.g. event_id {out['event_id'][low].iloc[0]!r}); is_bot is never true below 0.5"
        )
    key = ["tenant_id", "event_id"] if "tenant_id" in out.columns else ["event_id"]
    dup = out.duplicated(key)
    if dup.any():
        where = f" of tenant {out['tenant_id'][dup].iloc[0]!r}" if "tenant_id" in key else ""
        raise BotfilterError(
            f"{source}: event_id {out['event_id'][dup].iloc[0]!r}{where} is scored more than once"
        )
    out = out.reset_index(drop=True)
    out.attrs["checked"] = True
    return out


def _contract_ids(column: pd.Series, name: str, source: str) -> pd.Series:
    """A scores file's ids as the data contract reads identifiers (:func:`contract.columns.
    parse_text`): text (numbers as their digits), surrounding whitespace stripped; a blank or
    missing one is an error naming ``name``."""
    values = column.to_numpy(dtype=object)
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowException, OverflowError):
        arr = column_from_values(values.tolist())
    parsed = parse_text(arr)
    if parsed.missing.any():
        raise BotfilterError(f"{source}: {name} is empty on some rows")
    text = parsed.values.to_numpy(zero_copy_only=False)
    return pd.Series(text, index=column.index, dtype=object, name=column.name)


def with_tenants(scores: pd.DataFrame, events: pd.DataFrame, source: str) -> pd.DataFrame:
    """``scores`` with a ``tenant_id`` column: its own, else the tenant of the event with that
    id in ``events``. Without one, an id that two tenants use cannot be told apart: an error
    (PRODUCT.md: a scores table that covers several tenants carries ``tenant_id``)."""
    if "tenant_id" in scores.columns:
        return scores
    ids = pd.Index(events["event_id"].to_numpy(dtype=object))
    if ids.is_unique:  # the common case: one lookup, no pairs to deduplicate
        pos = ids.get_indexer(pd.Index(scores["event_id"].to_numpy(dtype=object)))
        # A score of no event in ``events`` (another tenant's, a quarantined one) serves no
        # count: it is left out, so that every row has a tenant (the Spark engine checks the
        # table again, and refused the rows without one).
        known = pos >= 0
        out = scores.loc[known].assign(
            tenant_id=events["tenant_id"].to_numpy(dtype=object)[pos[known]]
        )
        out = out.reset_index(drop=True)
        out.attrs.update(scores.attrs)
        return out
    owners = events[["event_id", "tenant_id"]].drop_duplicates()
    shared = owners["event_id"].duplicated(keep=False)
    if shared.any():
        clash = scores["event_id"].isin(owners.loc[shared, "event_id"])
        if clash.any():
            eid = scores.loc[clash, "event_id"].iloc[0]
            tenants = sorted(owners.loc[owners["event_id"] == eid, "tenant_id"])
            raise BotfilterError(
                f"{source}: event_id {eid!r} is an event of tenants {', '.join(tenants)}: "
                "a scores table covering several tenants needs a tenant_id column"
            )
    owner_of = owners.drop_duplicates("event_id").set_index("event_id")["tenant_id"]
    out = scores.assign(tenant_id=scores["event_id"].map(owner_of))
    out = out.loc[out["tenant_id"].notna()].reset_index(drop=True)  # as above
    out.attrs.update(scores.attrs)
    return out


def _scope_events(
    data: CleanTables[pd.DataFrame], window: Window, tenants: Sequence[str]
) -> pd.DataFrame:
    """Events a recompute of ``tenants`` may count: of window messages, before as_of."""
    m = data.messages
    sent = m["sent_at"]
    keep = m["tenant_id"].isin(tenants) & (sent >= window.stored_start) & (sent < window.end)
    e = data.events
    sel = e["tenant_id"].isin(tenants) & (e["occurred_at"] < window.end)
    kept = np.flatnonzero(keep.to_numpy())
    found = key_positions(  # a message is (tenant, id): ids are unique within a tenant only
        m["tenant_id"].to_numpy(dtype=object)[kept],
        m["message_id"].to_numpy(dtype=object)[kept],
        e["tenant_id"].to_numpy(dtype=object),
        e["message_id"].to_numpy(dtype=object),
    )
    sel &= found >= 0
    return e.loc[sel, ["event_id", "tenant_id", "message_id", "occurred_at"]]


def _champion(settings: Settings, model_uri: str | None) -> ModelRef:
    """The model that scoring would use (the champion by default), as a
    :class:`scoring.registry.ModelRef`: its label, content id and local files."""
    # Lazy: scoring.registry imports MLflow (1.5 s), which a recompute from a scores file or
    # from stored scores alone never needs.
    from scoring.registry import configure_mlflow, resolve_model

    uri = settings.mlflow_uri
    if model_uri is None and uri.startswith("sqlite:///") and not Path(uri[10:]).exists():
        # Opening it would create an empty MLflow store just to find no model in it.
        raise BotfilterError(f"no model registered yet ({uri}): train one with `botfilter train`")
    configure_mlflow(settings)
    return resolve_model(settings, model_uri)


def _score_with_model(settings: Settings, model_uri: str | None, ref: ModelRef | None) -> Scorer:
    """Scores with the model of ``ref`` (else of ``model_uri``), loaded with the enrichers on
    first use and kept: a recompute in parts scores part after part with one load."""
    loaded: tuple[BotModel, Enrichers] | None = None

    def score(tables: CleanTables[pd.DataFrame], /) -> pd.DataFrame:
        # Lazy: scoring.batch and the registry import LightGBM and MLflow (1.3-1.5 s), needed
        # only when some event has no stored score.
        from features.pipeline import Enrichers
        from scoring.batch import score_validated
        from scoring.registry import load_model, load_ref

        nonlocal loaded
        if loaded is None:
            # The resolved reference, not the alias again: the scores are those of the model
            # whose content id keys them, even if the champion moves meanwhile.
            model = load_ref(settings, ref) if ref is not None else load_model(settings, model_uri)
            loaded = (model, Enrichers.load())
        model, enrichers = loaded
        return score_validated(tables, settings, model=model, enrichers=enrichers)

    return score


def _covered(wanted: pd.DataFrame, table: pd.DataFrame) -> np.ndarray:
    """Whether each (tenant_id, event_id) of ``wanted`` is in ``table``."""
    return event_positions(table, wanted) >= 0


def resolve_scores(
    store: Store,
    settings: Settings,
    data: CleanTables[pd.DataFrame],
    window: Window,
    tenants: Sequence[str],
    options: RecomputeOptions,
) -> tuple[pd.DataFrame, str]:
    """Scores covering the events a recompute counts (with ``tenant_id``), and their source.

    With ``options.scores`` (a scores file): those, for this run only. They are never stored:
    their ``model_version`` is only what the file says, and must not pass for a registered
    model's. Otherwise stored scores of the model in use, keyed by its content id (``model_id``;
    a caller that brings its own ``scorer`` and ``model_version`` only is keyed by that label),
    are reused, whoever made them (an earlier recompute, or the online API), and only events
    without one are scored, with the preceding burst-window context so their features are
    complete; the new scores are stored.
    """
    needed = _scope_events(data, window, tenants)
    scores, scorer = options.scores, options.scorer
    model_version, model_id = options.model_version, options.model_id
    if scores is not None:
        if not scores.attrs.get("checked"):
            scores = check_scores(scores)
        own_events = data.events.loc[data.events["tenant_id"].isin(tenants)]
        return with_tenants(scores, own_events, "scores file"), "file"

    ref = None
    if model_version is None and model_id is None:
        try:
            ref = _champion(settings, options.model_uri)
        except BotfilterError as no_model:
            # No model to score with: stored scores of one model may still cover everything.
            covering = _covering_model(store, needed, tenants)
            if covering is None:
                raise
            stored = store.load_scores(tenants, covering, window.stored_start, reasons=True)
            # All there is: provisional scores too, however far the data reach now.
            stored = stored.drop(columns=[PROVISIONAL])
            return stored, f"store (no model: {str(no_model).splitlines()[0][:120]})"
        model_version, model_id = ref.version, ref.model_id
    if scorer is None:
        scorer = _score_with_model(settings, options.model_uri, ref)
    key = model_id or str(model_version)
    reach = _reach(data, window, tenants)
    stored = _current(store.load_scores(tenants, key, window.stored_start, reasons=True), reach)
    missing = ~_covered(needed, stored)
    if not missing.any():
        return stored, "store"

    first = needed.loc[missing, "occurred_at"].min()
    context_from = first - pd.Timedelta(seconds=LONGEST_WINDOW_S)
    e = data.events
    ours = e["tenant_id"].isin(tenants) & (e["occurred_at"] < window.end)
    sel = ours & (e["occurred_at"] >= context_from)
    # A message's history features use all of its earlier events, whatever their age.
    # (By message_id alone: another scope tenant's message with the same id only adds real,
    # earlier events of that tenant as context, which is cheaper than matching pairs.)
    rescored_messages = e.loc[ours & (e["occurred_at"] >= first), "message_id"].unique()
    sel |= ours & e["message_id"].isin(rescored_messages)
    events = e.loc[sel]
    m = data.messages
    messages = m.loc[m["tenant_id"].isin(tenants) & m["message_id"].isin(events["message_id"])]
    fresh = check_scores(scorer(Tables(messages, events)), "scoring")
    fresh = with_tenants(fresh, events, "scoring")
    # Only what no stored score covers is taken from this scoring: context events may lack
    # their own full context, and stored scores (the API's answers) are the model's already.
    fresh = fresh.loc[_covered(fresh, needed.loc[missing])]
    # A provisional score (its look-ahead window had not passed in these events) is stored with
    # how far its tenant's data reached: a run on the same data reuses it, a run on more data
    # scores the event again, from the events that followed it.
    _store_new(store, fresh, needed, key, reach)
    if stored.empty:
        return fresh, "scored"
    # Stored rows carry a top_reason column, which the metrics read over reasons, so fresh rows
    # need theirs too (else their bots count as "unknown" in bot_interactions).
    fresh = fresh.assign(top_reason=top_reasons(fresh["reasons"]))
    return pd.concat([stored, fresh], ignore_index=True), "store+scored"


def _reach(data: CleanTables[pd.DataFrame], window: Window, tenants: Sequence[str]) -> pd.Series:
    """Per tenant, its latest event before the window's end, in ns: how far its data reach, as
    the scoring of :func:`resolve_scores` sees them."""
    e = data.events
    ours = e.loc[e["tenant_id"].isin(tenants) & (e["occurred_at"] < window.end)]
    latest = ours.groupby("tenant_id", sort=False)["occurred_at"].max()
    return pd.Series(_ns(latest), index=latest.index, dtype=np.int64)


def _current(stored: pd.DataFrame, reach: pd.Series) -> pd.DataFrame:
    """The stored scores still valid: final ones, and provisional ones made from data that
    reached as far as the tenant's data reach now (nothing has arrived since)."""
    until = stored.pop(PROVISIONAL).to_numpy(dtype=np.float64)
    now = stored["tenant_id"].map(reach).to_numpy(dtype=np.float64)
    keep = np.isnan(until) | (until >= now)
    return stored if keep.all() else stored.loc[keep].reset_index(drop=True)


def _ns(times: pd.Series) -> np.ndarray:
    """Timestamps as int64 ns since the epoch (UTC)."""
    return pd.DatetimeIndex(times).as_unit("ns").to_numpy("datetime64[ns]").view(np.int64)


def _covering_model(store: Store, needed: pd.DataFrame, tenants: Sequence[str]) -> str | None:
    """The stored model (content id) with a score for every needed event, if any (most scores
    first)."""
    models = store.score_versions(tenants)
    for model in sorted(models, key=lambda v: (-models[v], v)):
        if models[model] < len(needed):
            break
        if _covered(needed, store.stored_score_ids(tenants, model)).all():
            return model
    return None


def _store_new(
    store: Store, scores: pd.DataFrame, needed: pd.DataFrame, model_id: str, reach: pd.Series
) -> int:
    """Store the scores of in-scope events under ``model_id``; a provisional one (its event less
    than LOOKAHEAD_S before its tenant's ``reach``, what the scoring saw) with that reach."""
    ours = scores.merge(
        needed[["tenant_id", "event_id", "occurred_at"]], on=["tenant_id", "event_id"]
    )
    until = ours["tenant_id"].map(reach).to_numpy(dtype=np.int64)  # every scored tenant has one
    final = window_passed(_ns(ours["occurred_at"]), until)
    ours[PROVISIONAL] = np.where(final, np.nan, until.astype(np.float64))
    return store.save_scores(
        ours[[*SCORE_COLUMNS, PROVISIONAL]],
        ours["tenant_id"].to_numpy(dtype=object),
        ours["occurred_at"],
        model_id=model_id,
    )


# --- the recompute ----------------------------------------------------------------------------

STAGES = ("settings", "locks", "scores", "metrics", "store write", "parquet")


def recompute(
    store: Store,
    settings: Settings,
    data: CleanTables[pd.DataFrame],
    options: RecomputeOptions | None = None,
) -> RecomputeResult:
    """Recompute the window ending at ``options.as_of`` (default now) into the store.

    ``data``: the clean tables (a :class:`contract.Validated` or :class:`Tables`). Settings come
    from the store (after taking newer rows of ``data.settings``). ``options.engine`` computes
    the partitions; locks, runs, scores and the write stay here.
    """
    options = options or RecomputeOptions()
    if options.out is not None:  # before the store is written or the run recorded
        check_out_dir(options.out)
    window = Window.ending(options.as_of, settings.window_days)
    channels = tuple(dict.fromkeys(options.channels))
    bad = [c for c in channels if c not in CHANNELS]
    if bad or not channels:
        raise BotfilterError(f"unknown channel {bad[0] if bad else ''!r}: use {CHANNELS}")
    present = set(data.messages["tenant_id"].unique())
    scope = sorted(set(options.tenants)) if options.tenants else sorted(present)
    unknown = [t for t in scope if t not in present]
    if unknown:
        raise BotfilterError(f"tenant {unknown[0]!r} has no messages in the data")
    if not scope:
        raise BotfilterError("the data has no messages: nothing to recompute")

    batch = options.batch or uuid.uuid4().hex
    names = STAGES if options.out else STAGES[:-1]
    with Stages(names, options.progress, options.console) as stages:
        with stages.stage("settings"):
            sync_from_data(store, data.settings)
        with contextlib.ExitStack() as held:
            with stages.stage("locks"):
                locks = [f"tenant:{t}" for t in scope]
                held.enter_context(store.locks(locks, options.lock_timeout))
            run_ids = {
                t: store.start_run("recompute", t, channels, window.end, window.start, batch)
                for t in scope
            }
            scoped = _Scope(window, scope, channels, run_ids)
            result = _run(store, settings, data, scoped, stages, options)
    result.timings, result.cpu = stages.timings, stages.cpu
    return result


@dataclass(frozen=True)
class _Scope:
    """What a recompute covers, once checked: its window, tenants, channels and job runs."""

    window: Window
    tenants: list[str]
    channels: tuple[str, ...]
    run_ids: dict[str, str]


def _run(
    store: Store,
    settings: Settings,
    data: CleanTables[pd.DataFrame],
    scope: _Scope,
    stages: Stages,
    options: RecomputeOptions,
) -> RecomputeResult:
    """The part of a recompute that runs under the tenants' locks."""
    window, channels, run_ids = scope.window, scope.channels, scope.run_ids
    open_runs = dict(run_ids)
    try:
        with store.read() as conn:
            # The queue first: a change committed between the two reads is then left pending
            # (applied again later), never marked done with its setting unread.
            seen = [int(i) for i in store.pending(conn)["id"]]
            exclusions = store.exclusions(conn)
        with stages.stage("scores"):
            scores, source = resolve_scores(store, settings, data, window, scope.tenants, options)
            model_scores = scores  # the console applies the lists in force when it reads
            scores = apply_lists(store, data, scores, scope.tenants)  # tenant allow/block lists
        with stages.stage("metrics"):
            parts = options.engine(
                data.messages,
                data.events,
                scores,
                exclusions,
                window,
                segments=data.segments,
                tenants=scope.tenants,
                channels=channels,
            )
        with stages.stage("store write"):
            events = build_window_events(
                data.messages, data.events, model_scores, window.stored_start, window.end,
                scope.tenants, default_asn_lookup(),
            )  # fmt: skip
            written, applied = _write(
                store, parts, window, channels, open_runs, source, seen, events
            )
        tables = parts.tables()
        files: dict[str, Path] = {}
        if options.out is not None:
            with stages.stage("parquet"):
                files = write_tables(tables, options.out)
    except BaseException as exc:
        message = _one_line(exc)
        for run_id in open_runs.values():
            with contextlib.suppress(Exception):
                store.finish_run(run_id, status="failed", error=message)
        if isinstance(exc, MissingScores):
            raise BotfilterError(str(exc)) from exc
        raise
    return RecomputeResult(
        window=window,
        tenants=tuple(scope.tenants),
        channels=channels,
        tables=tables,
        run_ids=run_ids,
        events_used=parts.events_used,
        rows_written=written,
        queue_applied=applied,
        scores_source=source,
        model_versions=parts.model_versions,
        files=files,
    )


def _write(
    store: Store,
    parts: Partitions,
    window: Window,
    channels: tuple[str, ...],
    run_ids: dict[str, str],
    source: str,
    seen: list[int],
    events: pd.DataFrame,
) -> tuple[int, int]:
    """Each tenant's partitions, window events (:mod:`jobs.store.window_events`), queue entries
    and job run: one transaction per tenant. ``run_ids`` are the runs still open: each leaves
    it once its tenant is written or has failed. A tenant the store refuses fails alone, named
    in one line, after the others are written (one 3,000-character campaign id over
    PostgreSQL's index limit stopped every tenant after it, and marked those before it failed:
    an audit)."""
    events_of = dict(tuple(events.groupby("tenant_id", sort=False)))
    stored = {name: parts.stored(name) for name in parts.frames}
    by_tenant = {
        name: dict(tuple(f.groupby("tenant_id", sort=False))) for name, f in stored.items()
    }
    now = pd.Timestamp.now(tz="UTC")
    written = applied = 0
    refused: dict[str, str] = {}
    for tenant, run_id in list(run_ids.items()):
        frames = {
            name: groups.get(tenant, stored[name].iloc[:0]) for name, groups in by_tenant.items()
        }
        # The models that scored this tenant's events; none when it had no event to score (the
        # score source is not a model: "store" was stamped as one).
        version = ",".join(parts.tenant_versions.get(tenant, ()))
        summary = parts.summary.loc[parts.summary["tenant_id"] == tenant].assign(
            window_start=window.start,
            as_of=window.end,
            computed_at=now,
            run_id=run_id,
            model_version=version,
        )
        try:
            with store.write() as conn:
                rows = store.replace_partitions(
                    conn, tenant, channels, window.first_date, window.last_date, frames, summary
                )
                mine = events_of.get(tenant, events.iloc[:0])
                store.replace_window_events(conn, tenant, channels, mine, run_id)
                done = store.complete_queue(conn, tenant, channels, seen, run_id)
                store.finish_run(
                    run_id,
                    rows_in=int(summary["events"].sum()),
                    rows_out=rows,
                    detail={
                        "messages": int(summary["messages"].sum()),
                        "delivered": int(summary["delivered"].sum()),
                        "queue_applied": done,
                        "scores": source,
                        "model_version": version,
                    },
                    conn=conn,
                )
        except SQLAlchemyError as exc:  # this tenant's rows refused: the others go on
            refused[tenant] = _one_line(exc)
            store.finish_run(run_id, status="failed", error=refused[tenant])
            del run_ids[tenant]
            continue
        del run_ids[tenant]
        written += rows
        applied += done
    if refused:
        named = "; ".join(f"tenant {t}: {why}" for t, why in refused.items())
        raise BotfilterError(
            f"the store refused {len(refused)} tenant(s), the others are written: {named}"
        )
    return written, applied


def _one_line(exc: BaseException) -> str:
    """The first line of a failure, for the job run (database errors put the statement and its
    parameters on later lines), with passwords masked."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return redact(text.splitlines()[0][:500]) if text else type(exc).__name__


def write_tables(tables: dict[str, pd.DataFrame], out: Path) -> dict[str, Path]:
    """Write ``NAME.parquet`` for each table; each file appears whole or not at all."""
    files = {}
    for name in PRODUCT_TABLES:
        table = _typed(pa.Table.from_pandas(tables[name], preserve_index=False))
        path = Path(out) / f"{name}.parquet"
        files[name] = write_whole(path, functools.partial(pq.write_table, table))
    return files


def write_quarantine(quarantine: pd.DataFrame, out: Path) -> Path:
    """Write the rows the contract refused as ``quarantine.parquet`` (the columns of
    ``botfilter validate``'s: table, row_number, record, reason), whole or not at all."""
    path = Path(out) / "quarantine.parquet"
    return write_whole(path, functools.partial(write_parquet, quarantine))


def _column_type(column: str) -> pa.DataType:
    """A metrics table column's type, as its rows give it (PRODUCT.md's tables)."""
    if column == "date":
        return pa.date32()
    if column == "bot_filter_applied":
        return pa.bool_()
    if column in RATES:
        return pa.float64()
    if column in COUNTS:
        return pa.int64()
    return pa.string()


def _typed(table: pa.Table) -> pa.Table:
    """``table`` with the types its rows would give it where pandas had none to give: a table
    without rows (a tenant without automations, a window without sends) had ids and dates of
    Arrow type null, which Spark reads as int and cannot merge with another run's files."""
    for i, column in enumerate(table.schema):
        if table.num_rows == 0 or pa.types.is_null(column.type):
            table = table.set_column(
                i, column.name, table.column(i).cast(_column_type(column.name))
            )
    return table


def load_data(data_dir: Path) -> Validated:
    """A data directory through the contract (clean typed tables, quarantine, report)."""
    return contract.load(Path(data_dir))


# Events per part of a recompute in parts: large enough that each part's fixed costs (settings,
# locks, store reads) vanish, small enough that memory stays low (the 2.65M-event world peaked
# at 1.7 GiB PSS, against 7.1 GiB whole; 10M events at 2.0 GiB).
RECOMPUTE_PART_EVENTS = 250_000


def recompute_data_dir(
    store: Store,
    settings: Settings,
    data_dir: Path,
    options: RecomputeOptions | None = None,
    *,
    scores_file: Path | None = None,
    part_events: int = RECOMPUTE_PART_EVENTS,
) -> tuple[Report, RecomputeResult]:
    """Validate ``data_dir`` and :func:`recompute` it (with the scores of ``scores_file``, when
    given); returns the validation counts and the result.

    Every tenant of a directory, recomputed with the local engine from stored scores or a
    scorer's, goes part by part (whole tenants, about ``part_events`` events each: see
    :func:`recompute_in_parts`), so memory follows the largest part, not the directory. A
    tenant subset, a scores file or another engine reads the whole directory at once (they
    check the data as one before any tenant is written).
    """
    options = options or RecomputeOptions()
    if options.out is not None:  # a bad --out fails before the data is even read
        check_out_dir(options.out)
    if _in_parts(options) and scores_file is None:
        parts = TenantParts(data_dir, part_events, dictionaries=True)
        return recompute_in_parts(store, settings, parts, options, settings.recompute_workers)
    validated = load_data(data_dir)
    if scores_file is not None:
        options = replace(options, scores=read_scores_file(scores_file))
    result = recompute(store, settings, validated, options)
    if options.out is not None:
        result.files["quarantine"] = write_quarantine(validated.quarantine, options.out)
    return validated.report, result


def _in_parts(options: RecomputeOptions) -> bool:
    return (
        options.tenants is None and options.scores is None and options.engine is compute_partitions
    )


def recompute_in_parts(
    store: Store,
    settings: Settings,
    parts: TenantParts,
    options: RecomputeOptions,
    workers: int = 1,
) -> tuple[Report, RecomputeResult]:
    """:func:`recompute` of every tenant of ``parts``, one part (whole tenants) at a time.

    Each tenant's metrics, window events, job run and queue entries are those of one
    :func:`recompute` of the whole directory (metrics never look across tenants, nor does the
    contract: ``tests/unit/test_recompute_parts.py``): the window is fixed once, the champion
    resolved and loaded once, the job runs share one batch id. Each part takes its tenants'
    locks and writes them, tenant by tenant, as the whole-directory recompute does. With
    ``workers`` > 1, that many processes recompute parts side by side (see
    :func:`recompute_parts`).
    """
    done = recompute_parts(store, settings, parts, options, workers)
    if not done.results:
        raise BotfilterError("the data has no messages: nothing to recompute")
    result = _merged(done.results)
    unknown = [m for r in done.reports for m in r.tables["events"].unknown_messages]
    elsewhere = parts.kept_elsewhere(unknown)  # read once for the counts and the rows
    if options.out is not None:
        result.files = write_tables(result.tables, options.out)
        quarantine = pd.concat(done.quarantines, ignore_index=True)
        result.files["quarantine"] = write_quarantine(
            settled_quarantine(quarantine, unknown, elsewhere), options.out
        )
    return parts.settle(merge_reports(done.reports), elsewhere), result


@dataclass
class PartsDone:
    """What :func:`recompute_parts` did, in the parts' order: each part's validation counts
    and quarantined rows, and the recomputes of the parts that held a wanted tenant."""

    reports: list[Report] = field(default_factory=list)
    quarantines: list[pd.DataFrame] = field(default_factory=list)
    results: list[RecomputeResult] = field(default_factory=list)

    def add(self, report: Report, quarantine: pd.DataFrame, result: RecomputeResult | None) -> None:
        self.reports.append(report)
        self.quarantines.append(quarantine)
        if result is not None:
            self.results.append(result)


def recompute_parts(
    store: Store,
    settings: Settings,
    parts: TenantParts,
    options: RecomputeOptions,
    workers: int = 1,
) -> PartsDone:
    """The parts' validation counts, quarantined rows and recomputes (see
    :func:`recompute_in_parts`).

    With ``options.tenants``, only the parts that hold those tenants are validated (the others
    are passed over), and a tenant without a clean message is left out rather than an error
    (the worker counts it as waiting for data): the counts then cover the parts read only.

    With ``workers`` > 1 (and the model's own scorer: a caller's ``scorer`` may not cross to
    another process), this process reads the files once, in order, and hands each part to one
    of ``workers`` processes, which validate, score what the store lacks and write the part's
    tenants as this process would (parts hold different tenants, so they share no lock nor
    row). The results come back in the parts' order.
    """
    window_end = Window.ending(options.as_of, settings.window_days).end  # one window, every part
    batch = options.batch or uuid.uuid4().hex
    part_options = replace(options, as_of=window_end, out=None, progress=False, batch=batch)
    part_options, ref = _with_champion(settings, part_options)
    wanted = None if options.tenants is None else frozenset(options.tenants)
    todo = sum(1 for i in range(len(parts)) if _wanted_in(parts.tenants(i), wanted))
    parallel = workers > 1 and todo > 1 and part_options.scorer is None
    if part_options.scorer is None and ref is not None and not parallel:
        part_options = replace(part_options, scorer=_score_with_model(settings, None, ref))
    with _PartsProgress(sum(p.events for p in parts.parts), options) as progress:
        if parallel:
            job = _PartJob(
                store.url, store.schema, store.lock_timeout, settings,
                replace(part_options, console=None), ref, wanted,
            )  # fmt: skip
            try:
                return _parts_in_workers(parts, job, workers, progress)
            except BrokenProcessPool:
                # A worker process was killed mid-part: the run it started would stay "running"
                # until its tenant's next run. The pool has stopped, so none is still going.
                store.abandon_batch(batch, "a worker process ended before the run finished")
                raise
        done = PartsDone()
        for i in range(len(parts)):
            if _passed_over(parts, i, wanted):
                progress.advance(parts.parts[i].events)
                continue
            validated = validate_raw(parts.raw(i))
            result = _recompute_part(store, settings, validated, part_options, wanted)
            done.add(validated.report, validated.quarantine, result)
            del validated
            progress.advance(parts.parts[i].events)
    return done


def _wanted_in(planned: list[str] | None, wanted: frozenset[str] | None) -> bool:
    """Whether a part with these planned tenants (None: unknown) may hold a wanted one."""
    return wanted is None or planned is None or not wanted.isdisjoint(planned)


def _passed_over(parts: TenantParts, i: int, wanted: frozenset[str] | None) -> bool:
    """Skip part ``i`` when its planned tenants are known and none is wanted."""
    if _wanted_in(parts.tenants(i), wanted):
        return False
    parts.skip(i)
    return True


def _recompute_part(
    store: Store,
    settings: Settings,
    validated: Validated,
    options: RecomputeOptions,
    wanted: frozenset[str] | None,
) -> RecomputeResult | None:
    """:func:`recompute` of one validated part's (wanted) tenants; None when it has none (rows
    without a tenant, or tenants with no clean message)."""
    present = set(validated.messages["tenant_id"].unique())
    scope = present if wanted is None else present & wanted
    if not scope:
        return None
    part_scope = replace(options, tenants=None if wanted is None else sorted(scope))
    return recompute(store, settings, validated, part_scope)


@dataclass(frozen=True)
class _PartJob:
    """What a worker process needs to recompute a part as this process would: where the store
    is (it opens its own), the settings, the parts' options and the resolved model."""

    store_url: str
    store_schema: str | None
    lock_timeout: float
    settings: Settings
    options: RecomputeOptions  # no scorer, no console: they stay in this process
    ref: ModelRef | None
    wanted: frozenset[str] | None


# Imported once by the workers' fork server, beside this process's own start.
_WORKER_PRELOAD = ("contract.parts", "contract.validate", "jobs.recompute")
# Per worker process: the scorer of each model, which loads it and the enrichers once.
_WORKER_SCORERS: dict[ModelRef, Scorer] = {}


@functools.lru_cache(maxsize=1)
def _worker_store(url: str, schema: str | None, lock_timeout: float) -> Store:
    """Per worker process: its own connection to the command's store, kept from part to part."""
    return Store(url, schema=schema, lock_timeout=lock_timeout)


def _recompute_shared(
    job: _PartJob, shared: dict[str, SharedTable]
) -> tuple[Report, pd.DataFrame, RecomputeResult | None]:
    """In a worker: validate and recompute one part handed over by :func:`share_raw`."""
    store = _worker_store(job.store_url, job.store_schema, job.lock_timeout)
    options = job.options
    if job.ref is not None:
        if job.ref not in _WORKER_SCORERS:
            _WORKER_SCORERS[job.ref] = _score_with_model(job.settings, None, job.ref)
        options = replace(options, scorer=_WORKER_SCORERS[job.ref])
    validated = validate_raw(unshare_raw(shared))
    result = _recompute_part(store, job.settings, validated, options, job.wanted)
    return validated.report, validated.quarantine, result


def _parts_in_workers(
    parts: TenantParts, job: _PartJob, workers: int, progress: _PartsProgress
) -> PartsDone:
    """Hand the parts to ``workers`` processes, at most one part waiting beyond those being
    recomputed; the results in the parts' order."""
    from scoring.workers import start_workers  # the standard library only

    pool = start_workers(workers, _WORKER_PRELOAD)
    futures: list[Future[tuple[Report, pd.DataFrame, RecomputeResult | None]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="botfilter-recompute-", dir=shm_dir()) as tmp:
            for i in range(len(parts)):
                if _passed_over(parts, i, job.wanted):
                    progress.advance(parts.parts[i].events)
                    continue
                shared = parts.share(i, Path(tmp) / f"part-{i}")
                future = pool.submit(_recompute_shared, job, shared)
                future.add_done_callback(functools.partial(progress.done, parts.parts[i].events))
                futures.append(future)
                while sum(not f.done() for f in futures) > workers:
                    wait([f for f in futures if not f.done()], return_when=FIRST_COMPLETED)
            done = [f.result() for f in futures]  # the first failure, in order, is raised
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    outcome = PartsDone()
    for part in done:
        outcome.add(*part)
    return outcome


def _with_champion(
    settings: Settings, options: RecomputeOptions
) -> tuple[RecomputeOptions, ModelRef | None]:
    """``options`` with the champion (or ``options.model_uri``) resolved once for every part,
    and the model's reference (its scorer loads it once, here or in each worker); as they were
    when no model is registered (a part then uses stored scores that cover it, as a
    whole-directory recompute does), or when they name their model already."""
    if options.model_version is not None or options.model_id is not None:
        return options, None
    try:
        ref = _champion(settings, options.model_uri)
    except BotfilterError:
        return options, None
    return replace(options, model_version=ref.version, model_id=ref.model_id), ref


def _merged(results: list[RecomputeResult]) -> RecomputeResult:
    """One result of the parts' results (tables sorted as one recompute sorts them)."""
    first = results[0]
    tables = {}
    for name in first.tables:
        whole = pd.concat([r.tables[name] for r in results], ignore_index=True)
        keys = ["tenant_id", *MODULES[name].keys, "channel"]
        tables[name] = whole.sort_values(keys, kind="stable").reset_index(drop=True)
    sources = dict.fromkeys(r.scores_source for r in results)
    timings: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    for r in results:  # update adds and, unlike +, keeps stages that took no time
        timings.update(r.timings)
        cpu.update(r.cpu)
    return RecomputeResult(
        window=first.window,
        tenants=tuple(sorted(t for r in results for t in r.tenants)),
        channels=first.channels,
        tables=tables,
        run_ids={t: run for r in results for t, run in r.run_ids.items()},
        events_used=sum(r.events_used for r in results),
        rows_written=sum(r.rows_written for r in results),
        queue_applied=sum(r.queue_applied for r in results),
        scores_source=" + ".join(sources) if len(sources) > 1 else first.scores_source,
        model_versions=tuple(dict.fromkeys(v for r in results for v in r.model_versions)),
        timings=dict(timings),
        cpu=dict(cpu),
    )


class _PartsProgress:
    """A rich progress bar over the events of the parts done (when ``options.progress``)."""

    def __init__(self, events: int, options: RecomputeOptions) -> None:
        self._bar = None
        if options.progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]recompute"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} events"),
                TimeElapsedColumn(),
                console=options.console,
                transient=True,
            )
            self._task = self._bar.add_task("recompute", total=events)

    def __enter__(self) -> _PartsProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, events: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, events)

    def done(self, events: int, _: object) -> None:
        """:meth:`advance`, as a future's done callback (rich's bar takes a lock)."""
        self.advance(events)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def parse_as_of(value: str | None) -> pd.Timestamp | None:
    """An ``--as-of`` value: ISO-8601 (no offset = UTC) or integer epoch milliseconds, within
    the years the data contract accepts ([2000, 2100)); anything else is a one-line error."""
    if value is None:
        return None
    text = value.strip()
    hint = "use ISO-8601 such as 2025-01-31T00:00:00Z, or epoch milliseconds"
    try:
        if text.lstrip("+-").isdigit():
            stamp = pd.Timestamp(int(text), unit="ms", tz="UTC")
        else:
            stamp = to_utc(text)
    except (BotfilterError, ValueError, OverflowError) as exc:
        # OutOfBoundsDatetime is a ValueError: pandas holds years 1677-2262 only
        raise BotfilterError(f"--as-of {value!r}: not a timestamp ({hint})") from exc
    if not TS_MIN <= stamp < TS_MAX:
        raise BotfilterError(
            f"--as-of {value!r}: out of range, must be in [{TS_MIN:%Y-%m-%d}, {TS_MAX:%Y-%m-%d})"
        )
    return stamp
