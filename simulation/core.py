"""``generate`` (in-memory tables) and ``simulate`` (Parquet files) for the synthetic world."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contract.schema import BOT_KINDS, EVENT_TYPES, TABLES
from core.errors import BotfilterError
from features.enrichment.reference import load_reference

from . import behaviour as bh
from .config import SimConfig
from .networks import Networks
from .new_scanner import new_scanner_family
from .world import DAY_MS, World, build_world, hex_ids, stream

if TYPE_CHECKING:
    from rich.progress import Progress

# ``None`` as an array: what ``np.where`` makes of a bare ``None`` (the typed form numpy accepts).
_NULL = np.array(None, dtype=object)

MAX_DAYS = 3660
MAX_TENANTS = 100_000


@dataclass(frozen=True)
class SimSummary:
    """What a run produced: sizes, label shares, where it was written."""

    tenants: int
    days: int
    seed: int
    profile: str
    recipients: int  # contacts that were sent at least one message
    messages: dict[str, int]  # channel -> messages
    delivered: dict[str, int]
    events: int
    events_by_type: dict[str, int]
    bot_share: dict[str, float]  # channel -> share of that channel's events that are bots
    bot_share_by_type: dict[str, float]  # "email open", "email click", "sms click"
    bot_kinds: dict[str, int]
    seconds: float
    out: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain dict (JSON-friendly)."""
        return asdict(self)


def _check_args(tenants: int, days: int, seed: int) -> None:
    if not 1 <= tenants <= MAX_TENANTS:
        raise BotfilterError(f"--tenants must be between 1 and {MAX_TENANTS}, got {tenants}")
    if not 1 <= days <= MAX_DAYS:
        raise BotfilterError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    if seed < 0:
        raise BotfilterError(f"--seed must be >= 0, got {seed}")


def generate(
    tenants: int = 3,
    days: int = 30,
    seed: int = 0,
    config: SimConfig | None = None,
    *,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Simulate a labelled world in memory: ``messages``, ``events``, ``segments``, ``settings``.

    Column names and order come from ``contract.schema.TABLES``. Deterministic for the arguments.
    """
    tables, _, _ = _generate(tenants, days, seed, config or SimConfig(), progress)
    return tables


def simulate(
    out: Path,
    tenants: int = 3,
    days: int = 30,
    seed: int = 0,
    config: SimConfig | None = None,
    *,
    progress: bool = False,
) -> SimSummary:
    """Simulate and write ``NAME.parquet`` for each table into ``out``; returns the summary."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BotfilterError(f"--out {out} exists and is not a directory")
    foreign = _foreign_tables(out)
    if foreign:
        raise BotfilterError(
            f"--out {out} holds tables botfilter simulate did not write ({', '.join(foreign)}); "
            "give a new or empty directory"
        )
    started = time.perf_counter()
    tables, bar, event_channel = _generate(tenants, days, seed, config or SimConfig(), progress)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BotfilterError(f"cannot create output directory {out}: {exc}") from exc
    files = {}
    with bar as p:
        task = p.add_task("writing Parquet", total=len(tables)) if p else None
        for name, frame in tables.items():
            path = out / f"{name}.parquet"
            _write_parquet(frame, path)
            files[name] = str(path)
            if p and task is not None:
                p.advance(task)
    profile = (config or SimConfig()).profile
    summary = summarize(tables, tenants, days, seed, profile, event_channel=event_channel)
    return _with(summary, seconds=time.perf_counter() - started, out=str(out), files=files)


def _with(summary: SimSummary, **changes: object) -> SimSummary:
    data = summary.as_dict()
    data.update(changes)
    return SimSummary(**data)


# Stamped in the schema metadata of every table the simulator writes: a directory holding only
# stamped tables may be written again; anything else is someone's data and is never overwritten.
STAMP = {b"botfilter.simulated": b"1"}


def _foreign_tables(out: Path) -> list[str]:
    """The table files in ``out`` (any format, any case) that the simulator did not write."""
    if not out.is_dir():
        return []
    names = set(TABLES)
    found = sorted(p for p in out.iterdir() if p.stem.lower() in names and p.suffix)
    # Written before the stamp: the events carry the simulator's own "family" column.
    legacy = "family" in (_schema(out / "events.parquet") or pa.schema([])).names
    return [p.name for p in found if not (legacy and p.suffix == ".parquet") and not _stamped(p)]


def _schema(path: Path) -> pa.Schema | None:
    """The Parquet schema of ``path``, None if it is no Parquet file."""
    if path.suffix != ".parquet" or not path.is_file():
        return None
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException):  # not Parquet after all: someone's file
        return None


def _stamped(path: Path) -> bool:
    schema = _schema(path)
    meta = (schema.metadata if schema is not None else None) or {}
    return all(meta.get(k) == v for k, v in STAMP.items())


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **STAMP})
    try:
        pq.write_table(table, path, compression="zstd")
    except OSError as exc:
        raise BotfilterError(f"cannot write {path}: {exc}") from exc


def _progress(enabled: bool) -> AbstractContextManager[Progress | None]:
    if not enabled:
        return nullcontext(None)
    # Imported only when a bar is shown: rich.progress costs 0.11 s (-X importtime).
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=False,
    )


def _generate(
    tenants: int, days: int, seed: int, cfg: SimConfig, progress: bool
) -> tuple[dict[str, pd.DataFrame], AbstractContextManager[Progress | None], np.ndarray]:
    _check_args(tenants, days, seed)
    steps = (
        "reference data",
        "world",
        "people",
        "scanners",
        "privacy prefetch",
        "previews",
        "crawlers",
        "tables",
    )
    with _progress(progress) as p:
        task = p.add_task("simulating", total=len(steps)) if p else None

        def step(i: int) -> None:
            if p and task is not None:
                p.update(
                    task, completed=i, description=f"simulating: {steps[min(i, len(steps) - 1)]}"
                )

        step(0)
        nets = Networks(load_reference())
        step(1)
        world = build_world(cfg, nets, tenants, days, seed)
        mv = bh.view(world)
        parts = bh.Parts()
        step(2)
        first_read = bh.people_email(world, mv, stream(seed, "people_email"), parts)
        bh.people_sms(world, mv, stream(seed, "people_sms"), parts)
        step(3)
        bh.scanners(world, mv, stream(seed, "scanners"), parts)
        step(4)
        bh.apple_mpp(world, mv, stream(seed, "mpp"), parts, first_read)
        step(5)
        bh.link_previews(world, mv, stream(seed, "previews"), parts)
        step(6)
        bh.crawlers(world, mv, stream(seed, "crawlers"), parts)
        new_scanner_family(world, mv, nets, stream(seed, "new_scanner"), parts)
        step(7)
        tables, event_channel = _tables(world, mv, parts.arrays(), seed)
        step(len(steps))
    return tables, _progress(progress), event_channel


def _tables(
    w: World, mv: bh.MessageView, ev: dict[str, np.ndarray], seed: int
) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """Turn world and event arrays into the contract's tables (and each event's channel)."""
    msgs, ct, cn = w.messages, w.contacts, w.contents
    n_msg = len(msgs)
    message_id = hex_ids("m_", n_msg, seed * 2 + 1)
    tenant_of_msg = w.tenant_id[cn.tenant[msgs.content]]
    email = cn.channel[msgs.content] == 0
    recipient_domain = np.where(email, w.domains.name[ct.domain[msgs.contact]], _NULL)
    campaign = np.where(cn.is_campaign[msgs.content], cn.content_id[msgs.content], _NULL)
    automation = np.where(~cn.is_campaign[msgs.content], cn.content_id[msgs.content], _NULL)
    messages = pd.DataFrame(
        {
            "message_id": message_id,
            "tenant_id": tenant_of_msg,
            "channel": np.where(email, "email", "sms").astype(object),
            "campaign_id": campaign,
            "automation_id": automation,
            "contact_id": ct.contact_id[msgs.contact],
            "recipient_domain": recipient_domain,
            "sent_at": _ts(msgs.sent),
            "delivered_at": _ts(
                np.where(msgs.delivered >= 0, msgs.delivered, np.iinfo(np.int64).min)
            ),
            "link_count": cn.link_count[msgs.content].astype(np.int64),
        }
    )[TABLES["messages"].names]

    # Events: observed only before the window end; never before delivery.
    t = np.maximum(ev["t"], mv.delivered[ev["msg"]] + 1)
    keep = (t < w.end_ms) & (mv.delivered[ev["msg"]] >= 0)
    ev = {k: v[keep] for k, v in ev.items()}
    t = t[keep]
    order = np.lexsort((ev["src"], ev["msg"], t, cn.tenant[msgs.content[ev["msg"]]]))
    ev = {k: v[order] for k, v in ev.items()}
    t = t[order]
    n = t.size
    msg = ev["msg"]
    ip_text, ip_asn = w.ips.arrays()
    ua_text = w.uas.values()
    ua_code = ev["ua"]
    ua = np.where(ua_code >= 0, ua_text[np.maximum(ua_code, 0)], _NULL)
    is_click = ev["etype"] == bh.CLICK
    pos = ev["pos"]
    url_idx = (
        w.url_codes[np.where(is_click, cn.url_off[msgs.content[msg]] + np.maximum(pos, 0), 0)]
        if n
        else pos
    )
    url = np.where(is_click, w.urls.values()[url_idx] if n else url_idx, _NULL)
    hidden = is_click & (pos == mv.hidden_pos[msg])
    asn = ip_asn[ev["ip"]]
    resolved = (stream(seed, "asn").random(n) < w.cfg.asn_resolved_share) & (asn >= 0)
    src = ev["src"]
    kinds = np.asarray(bh.SOURCE_KIND, dtype=object)
    if not set(k for k in bh.SOURCE_KIND if k) <= set(BOT_KINDS):
        raise AssertionError("simulator bot kinds must be contract BOT_KINDS")
    events = pd.DataFrame(
        {
            "event_id": hex_ids("e_", n, seed * 2 + 2),
            "tenant_id": tenant_of_msg[msg],
            "message_id": message_id[msg],
            "type": np.asarray(EVENT_TYPES, dtype=object)[ev["etype"]],
            "occurred_at": _ts(t),
            "ip": ip_text[ev["ip"]],
            "user_agent": ua,
            "url": url,
            "link_position": pd.array(np.where(is_click, pos, 0), dtype="Int64"),
            "is_hidden_link": hidden,
            "http_method": np.where(ev["method"] == bh.HEAD, "HEAD", "GET").astype(object),
            "asn": pd.array(np.where(resolved, asn, 0), dtype="Int64"),
            "label": np.where(src == bh.HUMAN, "human", "bot").astype(object),
            "bot_kind": kinds[src],
        }
    )
    events.loc[~is_click, "link_position"] = pd.NA
    events.loc[~resolved, "asn"] = pd.NA
    # The family (how a person reached us, or which bot) is for evaluation only: an extra column.
    events = events[TABLES["events"].names]
    events["family"] = np.asarray(bh.FAMILIES, dtype=object)[ev["fam"]]
    segments = w.segments[TABLES["segments"].names].reset_index(drop=True)
    settings = w.settings[TABLES["settings"].names].reset_index(drop=True)
    tables = {"messages": messages, "events": events, "segments": segments, "settings": settings}
    return tables, np.where(mv.email[msg], "email", "sms")


def _ts(ms: np.ndarray) -> pd.Series:
    """UTC timestamps (millisecond precision) from epoch ms; int64 min becomes NaT."""
    values = np.asarray(ms, dtype=np.int64)
    out = pd.Series(values.astype("datetime64[ms]"))
    out[values == np.iinfo(np.int64).min] = pd.NaT
    return out.dt.tz_localize("UTC")


def summarize(
    tables: dict[str, pd.DataFrame],
    tenants: int,
    days: int,
    seed: int,
    profile: str,
    *,
    event_channel: np.ndarray | None = None,
) -> SimSummary:
    """Counts and shares of generated tables (what a run produced).

    ``event_channel`` (each event's channel) saves a join when the caller already knows it.
    """
    msgs, ev = tables["messages"], tables["events"]
    if event_channel is None:
        channel = ev["message_id"].map(msgs.set_index("message_id")["channel"])
    else:
        channel = pd.Series(event_channel, index=ev.index)
    bot = ev["label"] == "bot"
    share = {
        str(c): float(bot[channel == c].mean()) for c in ("email", "sms") if (channel == c).any()
    }
    by_type = {}
    for c in ("email", "sms"):
        for ty in EVENT_TYPES:
            m = (channel == c) & (ev["type"] == ty)
            if m.any():
                by_type[f"{c} {ty}"] = float(bot[m].mean())
    return SimSummary(
        tenants=tenants,
        days=days,
        seed=seed,
        profile=profile,
        recipients=int(msgs["contact_id"].nunique()),
        messages={str(k): int(v) for k, v in msgs["channel"].value_counts().sort_index().items()},
        delivered={
            str(k): int(v)
            for k, v in msgs[msgs["delivered_at"].notna()]["channel"]
            .value_counts()
            .sort_index()
            .items()
        },
        events=len(ev),
        events_by_type={str(k): int(v) for k, v in ev["type"].value_counts().sort_index().items()},
        bot_share=share,
        bot_share_by_type=by_type,
        bot_kinds={str(k): int(v) for k, v in ev["bot_kind"].value_counts().sort_index().items()},
        seconds=0.0,
    )


__all__ = ["DAY_MS", "SimSummary", "generate", "simulate", "summarize"]
