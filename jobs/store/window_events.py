"""The window's events as the console reads them: one Arrow batch per (tenant, module, key,
channel) in ``window_events``, written by the recompute with its partitions.

A batch holds every event the recompute counted for one campaign, one automation, or the
tenant's messages with neither (module ``other``): its message, type, time, delivery, the model's
verdict (``bot_score``, ``is_bot`` *before* the tenant's lists: the console applies the entries
in force when it reads), the model's reasons (bots only), the bot kind when known, and what a
list entry matches (ip, asn, user agent, recipient domain). The drill-down reads the batches of
one key (the primary key starts with tenant, module, key); the list dry run reads a tenant's.
A batch is a zstd-compressed Arrow IPC stream with repeated text as dictionaries: a column of a
few distinct values (type, ip, user agent, network) is stored once per batch, where a row per
event would repeat it a million times, and reading one costs microseconds.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from jobs.metrics.compute import event_positions, key_positions, parse_reasons
from jobs.store.schema import window_events

#: Module of a batch, by the message column that names its key (``other``: neither).
MODULE_KEYS = {"campaigns": "campaign_id", "automations": "automation_id"}
OTHER = "other"
#: (ips, given asns) -> resolved ASN per event (as jobs.lists.rules.AsnLookup).
AsnLookup = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Text columns of few distinct values: dictionary-encoded in a batch.
DICTIONARY = ("type", "ip", "user_agent", "recipient_domain", "network", "bot_kind")
#: What a list dry run reads of every event, stored apart and uncompressed (``matches``).
MATCHES = (
    "message_code",
    "type",
    "delivered",
    "is_bot",
    "ip",
    "asn",
    "user_agent",
    "recipient_domain",
)
#: The event columns a list entry matches, carried when the data has them.
MATCH_COLUMNS = ("ip", "asn", "user_agent")


def build(
    messages: pd.DataFrame,
    events: pd.DataFrame,
    scores: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    tenants: Sequence[str],
    asn_lookup: AsnLookup | None = None,
) -> pd.DataFrame:
    """One row per event of ``tenants``' messages sent in ``start..end`` and occurring before
    ``end`` (what the recompute counts), with its message's channel, module, key, delivery and
    recipient domain, its score (``scores``: the model's, with ``tenant_id``) and its network
    (``asn_lookup`` resolves ASNs from addresses; without it only given ASNs are shown)."""
    # Positions, not filtered copies: the frames carry columns the console never reads, and
    # copying them twice cost a second of a 1M-event recompute.
    wanted = list(tenants)
    sent = messages["sent_at"]
    mi = np.flatnonzero(messages["tenant_id"].isin(wanted) & (sent >= start) & (sent < end))
    ei = np.flatnonzero(events["tenant_id"].isin(wanted) & (events["occurred_at"] < end))

    def message_column(name: str) -> np.ndarray:
        return messages[name].to_numpy(dtype=object)[mi]

    def event_column(name: str) -> np.ndarray:
        return events[name].to_numpy(dtype=object)[ei]

    e_tenant, e_message = event_column("tenant_id"), event_column("message_id")
    found_at = key_positions(
        message_column("tenant_id"), message_column("message_id"), e_tenant, e_message
    )
    ei, e_tenant, e_message = (a[found_at >= 0] for a in (ei, e_tenant, e_message))
    code: np.ndarray = found_at[found_at >= 0]
    rows = mi[code]  # each event's message row in ``messages``
    module = np.full(len(rows), OTHER, dtype=object)
    key = np.full(len(rows), "", dtype=object)
    for name, column in MODULE_KEYS.items():
        if column in messages.columns:
            values = messages[column].to_numpy(dtype=object)[rows]
            has = pd.notna(values)
            module[has] = name
            key[has] = values[has]
    out = pd.DataFrame(
        {
            "tenant_id": e_tenant,
            "channel": messages["channel"].to_numpy(dtype=object)[rows],
            "module": module,
            "key": key,
            "event_id": event_column("event_id"),
            "message_id": e_message,
            # One integer per message of the recompute: a dry run counts messages by it.
            "message_code": code.astype(np.int32),
            "type": event_column("type"),
            "occurred_at": events["occurred_at"].array.take(ei),
            "delivered": (
                messages["delivered_at"].notna().to_numpy()[rows]
                if "delivered_at" in messages.columns
                else np.ones(len(ei), dtype=bool)
            ),
        }
    )
    pos = event_positions(scores, out)
    found = pos >= 0
    out["bot_score"] = np.append(scores["bot_score"].to_numpy(np.float64), np.nan)[pos]
    out["is_bot"] = np.append(scores["is_bot"].to_numpy(dtype=bool), False)[pos] & found
    # The model's reasons, for its bots only (a person's are never shown).
    bots = out["is_bot"].to_numpy()
    if "reasons" in scores.columns:
        reasons = _reason_lists(scores["reasons"]).take(pa.array(pos, mask=~bots))
        out["reasons"] = pd.arrays.ArrowExtensionArray(reasons)
    else:
        out["reasons"] = np.full(len(out), None, dtype=object)
    # Bot kind: the scores' own (the model's), else the events' label; absent: none.
    if "bot_kind" in scores.columns:
        kinds = scores["bot_kind"].to_numpy(dtype=object)
        out["bot_kind"] = np.append(kinds, np.array([None], dtype=object))[pos]
    elif "bot_kind" in events.columns:
        out["bot_kind"] = event_column("bot_kind")
    for column in MATCH_COLUMNS:
        if column in events.columns:
            out[column] = events[column].array.take(ei)
    if "recipient_domain" in messages.columns:
        out["recipient_domain"] = messages["recipient_domain"].to_numpy(dtype=object)[rows]
    out["network"] = networks(out, asn_lookup)
    return out


def _reason_lists(values: pd.Series) -> pa.Array:
    """Scores' reasons as one Arrow list array (Arrow-backed scores are taken as they are:
    boxing a million lists in Python cost a second)."""
    if isinstance(values.dtype, pd.ArrowDtype):
        arrow = pa.array(values.array)  # a ChunkedArray, through __arrow_array__
        if isinstance(arrow, pa.ChunkedArray):
            arrow = arrow.combine_chunks()
        return arrow.cast(pa.list_(pa.string()))
    lists = [
        r if isinstance(r, list | np.ndarray) else parse_reasons(r)
        for r in values.to_numpy(dtype=object)
    ]
    return pa.array(lists, pa.list_(pa.string()))


def networks(events: pd.DataFrame, asn_lookup: AsnLookup | None) -> np.ndarray:
    """``AS<n> <prefix>`` per event (the prefix alone when no ASN is known; ``unknown``
    without an address)."""
    if "ip" not in events or events.empty:
        return np.full(len(events), "unknown", dtype=object)
    given = (
        pd.to_numeric(events["asn"], errors="coerce").to_numpy(dtype=np.float64)
        if "asn" in events
        else np.full(len(events), np.nan)
    )
    # One lookup and one label per distinct (address, given ASN): bots come from few networks.
    # Pairs as one integer code: a MultiIndex of 1M pairs cost 4 s of a 1M-event recompute.
    ip_codes, ip_values = pd.factorize(events["ip"].to_numpy(dtype=object))
    asn_codes, asn_values = pd.factorize(given)
    width = len(asn_values) + 1
    codes, pairs = pd.factorize((ip_codes.astype(np.int64) + 1) * width + (asn_codes + 1))
    ip_u = np.append(np.array([""], dtype=object), ip_values.astype(str))[pairs // width]
    asn_u = np.append([np.nan], asn_values.astype(np.float64))[pairs % width]
    if asn_lookup is not None:
        asns = np.asarray(asn_lookup(ip_u, asn_u), dtype=np.float64)
    else:
        asns = np.nan_to_num(asn_u)
    prefix = _prefixes(ip_u)
    known = np.nan_to_num(asns) > 0
    labels = prefix.copy()
    if known.any():
        asn_text = pd.Series(asns[known].astype(np.int64)).astype(str).to_numpy(dtype=object)
        labels[known] = "AS" + asn_text + " " + prefix[known]
    return np.asarray(labels[codes], dtype=object)


# A canonical dotted-quad IPv4 address (what ipaddress accepts: no leading zeros).
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"^{_OCTET}(?:\.{_OCTET}){{3}}$"


def _prefixes(ips: np.ndarray) -> np.ndarray:
    """:func:`_prefix` of each address (``unknown`` for none). IPv4 by Arrow's string kernels:
    ``ipaddress`` per address cost 60 s of a 1M-message recompute (1.9M distinct addresses),
    and pandas' string methods 2.7 s."""
    text = pa.array(ips, pa.string(), from_pandas=True).fill_null("")
    v4 = pc.match_substring_regex(text, _IPV4).to_numpy(zero_copy_only=False)
    out = np.asarray(
        pc.replace_substring_regex(text, r"\.\d+$", ".0/24").to_numpy(zero_copy_only=False),
        dtype=object,
    )
    rest = np.flatnonzero(~v4)
    out[rest] = _v6_prefixes([str(ips[i]) if ips[i] is not None else "" for i in rest])
    return out


def _v6_prefixes(texts: list[str]) -> list[str]:
    """:func:`_prefix` of addresses that are not canonical IPv4 (``unknown`` for ""). Plain
    IPv6 is parsed by ``inet_pton`` and its /48 written from the first three groups, once per
    /48: ``ipaddress`` per address cost 4.5 s of a 2.65M-event recompute. Anything inet_pton
    refuses (zone ids, surrounding space, not an address) goes through :func:`_prefix`."""
    labels: dict[tuple[int, ...], str] = {}
    out = []
    for text in texts:
        if not text:
            out.append("unknown")
            continue
        try:
            groups = struct.unpack_from(">3H", socket.inet_pton(socket.AF_INET6, text))
        except (OSError, ValueError, UnicodeError):
            out.append(_prefix(text))
            continue
        label = labels.get(groups)
        if label is None:
            label = labels[groups] = _v6_48(*groups)
        out.append(label)
    return out


def _v6_48(a: int, b: int, c: int) -> str:
    """The /48 whose first groups are ``a:b:c``, as ``ipaddress`` writes it: the remaining five
    zero groups (and zero groups just before them) fold into ``::``; a lone leading zero group
    is the shorter run and stays."""
    kept = [a, b, c]
    while kept and kept[-1] == 0:
        kept.pop()
    return ":".join(f"{g:x}" for g in kept) + "::/48"


def _prefix(ip: str) -> str:
    """The /24 of an IPv4 address or /48 of an IPv6 one."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    bits = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """The batch columns of ``frame`` as one Arrow table (converted once for all batches)."""
    columns: dict[str, Any] = {}
    for name in frame.columns:
        if name in ("tenant_id", "channel", "module", "key"):
            continue  # the row's key says them
        values = frame[name]
        if name == "reasons" and isinstance(values.dtype, pd.ArrowDtype):
            array = pa.array(values.array)
        elif name == "reasons":
            array = pa.array(
                [None if r is None else list(r) for r in values], pa.list_(pa.string())
            )
        elif name == "occurred_at":
            # Clean frames hold UTC timestamps already: to_datetime sampled them element by
            # element to decide on a cache (3% of a toggle recompute).
            if not isinstance(values.dtype, pd.DatetimeTZDtype):
                values = pd.to_datetime(values, utc=True)
            array = pa.Array.from_pandas(values.dt.tz_convert("UTC"))
        elif name == "asn":
            array = pa.array(pd.to_numeric(values).astype("Int64"), pa.int64())
        elif values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
            text = values.astype(object).to_numpy(dtype=object)
            array = pa.array(text, pa.string(), from_pandas=True)
        else:
            array = pa.array(values.to_numpy())
        columns[name] = array
    return pa.table(columns)


def _encode(table: pa.Table) -> tuple[bytes, bytes]:
    """One batch as Arrow IPC files (Feather v2) with repeated text as dictionaries: every
    column zstd-compressed, and the :data:`MATCHES` columns uncompressed (a dry run reads a
    tenant's hundreds of batches: IPC without decompression reads them in microseconds each,
    where Parquet or zstd take a millisecond)."""
    for i, name in enumerate(table.column_names):
        if name in DICTIONARY:  # per batch: a batch holds its own values only
            table = table.set_column(i, name, pc.dictionary_encode(table.column(i)))
    return _ipc(table, "zstd"), _ipc(table.select(_present(MATCHES, table)), None)


def _ipc(table: pa.Table, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _present(names: Sequence[str], table: pa.Table) -> list[str]:
    return [c for c in names if c in table.column_names]


def replace(
    conn: Connection, tenant: str, channels: Sequence[str], frame: pd.DataFrame, run_id: str
) -> int:
    """Replace the tenant's batches of ``channels`` by ``frame``'s rows (:func:`build`, this
    tenant's). Call inside the recompute's write transaction; returns the events written."""
    t = window_events
    if len(frame) and not (frame["tenant_id"] == tenant).all():
        raise ValueError(f"window events: rows of another tenant than {tenant}")
    conn.execute(delete(t).where(t.c.tenant_id == tenant, t.c.channel.in_(list(channels))))
    # Rows of one (channel, module, key) made contiguous by a stable sort of integer group
    # codes, and the frame converted to Arrow once: sorting the frame itself copied it.
    keep = np.flatnonzero(frame["channel"].isin(list(channels)).to_numpy())
    group: np.ndarray = np.zeros(len(keep), dtype=np.int64)
    for name in ("channel", "module", "key"):
        codes, uniques = pd.factorize(frame[name].to_numpy(dtype=object)[keep])
        group = group * len(uniques) + codes
    codes, _ = pd.factorize(group)
    order = keep[np.argsort(codes, kind="stable")]
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes))])
    table = _arrow(frame).take(pa.array(order))
    bots = frame["is_bot"].to_numpy(dtype=bool)[order]
    names = [frame[c].to_numpy(dtype=object)[order] for c in ("channel", "module", "key")]
    rows = []
    for first, stop in zip(starts[:-1], starts[1:], strict=True):
        first, n = int(first), int(stop - first)
        data, matches = _encode(table.slice(first, n))
        channel, module, key = (str(v[first]) for v in names)
        rows.append(
            {
                "tenant_id": tenant,
                "module": module,
                "key": key,
                "channel": channel,
                "run_id": run_id,
                "events": n,
                "bots": int(bots[first : first + n].sum()),
                "data": data,
                "matches": matches,
            }
        )
    if rows:
        conn.execute(t.insert(), rows)
    return len(order)


def read(
    conn: Connection,
    tenant: str,
    module: str | None = None,
    key: str | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The stored events of one campaign or automation (``module``, ``key``), or all the
    tenant's, with ``tenant_id``, ``channel``, ``module`` and ``key`` (and ``columns`` of the
    batches' only, when given: a dry run needs no reasons)."""
    t = window_events
    stmt = select(t.c.channel, t.c.module, t.c.key, t.c.data).where(t.c.tenant_id == tenant)
    if module is not None:
        stmt = stmt.where(t.c.module == module)
    if key is not None:
        stmt = stmt.where(t.c.key == key)
    # The dry run's columns come from the uncompressed copy, the rest from the whole batch.
    quick = columns is not None and set(columns) <= set(MATCHES)
    blobs = t.c.matches if quick else t.c.data
    stmt = stmt.with_only_columns(t.c.channel, t.c.module, t.c.key, blobs)
    tables, labels = [], []
    for channel, mod, k, blob in conn.execute(stmt.order_by(t.c.module, t.c.key, t.c.channel)):
        table = feather.read_table(pa.BufferReader(blob))
        if columns is not None:
            table = table.select(_present(columns, table))
        tables.append(table)
        labels.append((channel, mod, k, table.num_rows))
    if not tables:
        names = ("tenant_id", "channel", "module", "key", "event_id", *(columns or ()))
        return pd.DataFrame({c: pd.Series(dtype=object) for c in dict.fromkeys(names)})
    # One chunk first: pandas unifies hundreds of chunks' dictionaries 30 times slower.
    whole = pa.concat_tables(tables, promote_options="default").combine_chunks().to_pandas()
    sizes = [n for *_, n in labels]
    whole.insert(0, "tenant_id", tenant)
    for i, name in enumerate(("channel", "module", "key")):
        whole.insert(i + 1, name, np.repeat([lab[i] for lab in labels], sizes).astype(object))
    if "occurred_at" in whole.columns:
        whole["occurred_at"] = pd.to_datetime(whole["occurred_at"], utc=True)
    if "asn" in whole.columns:
        whole["asn"] = whole["asn"].astype("Int64")
    return whole


def content(conn: Connection, tenant: str) -> tuple[Any, ...]:
    """What identifies the tenant's stored batches (changes with every recompute's write)."""
    t = window_events
    stmt = select(func.count(), func.min(t.c.run_id), func.max(t.c.run_id), func.sum(t.c.events))
    return tuple(conn.execute(stmt.where(t.c.tenant_id == tenant)).one())


def size(conn: Connection, tenant: str | None = None) -> dict[str, int]:
    """Batches, events and stored bytes (of one tenant, or all)."""
    t = window_events
    stored = func.length(t.c.data) + func.length(t.c.matches)
    stmt = select(func.count(), func.sum(t.c.events), func.sum(stored))
    if tenant is not None:
        stmt = stmt.where(t.c.tenant_id == tenant)
    rows, events, data = conn.execute(stmt).one()
    return {"batches": int(rows or 0), "events": int(events or 0), "bytes": int(data or 0)}
