"""The declarative half of the metric spec: statuses, counts, rates, module tables, the window.

Nothing here computes a table. :mod:`jobs.metrics.compute` runs these definitions with
pandas/numpy, for both engines (the Spark engine runs it per tenant on executors), so every
engine counts by one definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import pandas as pd

from contract.schema import MESSAGE_CONTEXT
from core.errors import BotfilterError

DAY_NS = 86_400 * 10**9
SMS = "sms"  # the channel without opens: email-only columns are empty for it

# --- the spec ---------------------------------------------------------------------------------

StatusFn = Callable[[Any, Any], Any]

#: Event statuses as functions of (is_bot, filter_on); both may be numpy/pandas booleans or Spark
#: Columns. ``filter_on`` is the tenant's "exclude bots" setting for the message's channel.
STATUSES: dict[str, StatusFn] = {
    "counted": lambda is_bot, filter_on: ~(filter_on & is_bot),
    "excluded": lambda is_bot, filter_on: filter_on & is_bot,
    "all": lambda is_bot, filter_on: is_bot | ~is_bot,
    "human": lambda is_bot, filter_on: ~is_bot,
    "bot": lambda is_bot, filter_on: is_bot,
}

Grain = Literal["delivered", "events", "messages"]


@dataclass(frozen=True)
class Count:
    """One additive counted column of a partition.

    ``grain``: ``delivered`` = delivered messages; ``events`` = events of ``types`` with ``status``;
    ``messages`` = messages (message-days on the dashboard) with at least one such event.
    """

    name: str
    grain: Grain
    types: tuple[str, ...] = ()
    status: str = "counted"
    email_only: bool = False  # empty (null) for SMS: SMS has no opens
    description: str = ""


@dataclass(frozen=True)
class Rate:
    """A ratio of two summed counts; empty where the denominator is 0."""

    name: str
    numerator: str
    denominator: str
    email_only: bool = False


COUNTS: dict[str, Count] = {
    c.name: c
    for c in (
        Count("delivered", "delivered", description="messages with delivered_at set"),
        Count("opens_total", "events", ("open",), "counted", True, "counted open events"),
        Count(
            "opens_unique",
            "messages",
            ("open", "click"),
            "counted",
            True,
            "messages with a counted open or click (a click implies an open)",
        ),
        Count("clicks_total", "events", ("click",), "counted", False, "counted click events"),
        Count("clicks_unique", "messages", ("click",), "counted", False, "messages clicked"),
        Count("bot_opens_excluded", "events", ("open",), "excluded", True, "opens filtered out"),
        Count("bot_clicks_excluded", "events", ("click",), "excluded", False, "clicks filtered"),
        # Both sides of the comparison the reports show, whatever the setting is.
        Count("opens_total_all", "events", ("open",), "all", True),
        Count("opens_unique_all", "messages", ("open", "click"), "all", True),
        Count("clicks_total_all", "events", ("click",), "all", False),
        Count("clicks_unique_all", "messages", ("click",), "all", False),
        Count("opens_total_human", "events", ("open",), "human", True),
        Count("opens_unique_human", "messages", ("open", "click"), "human", True),
        Count("clicks_total_human", "events", ("click",), "human", False),
        Count("clicks_unique_human", "messages", ("click",), "human", False),
        # Report breakdown by bot kind and recipient domain (event grain only).
        Count("bot_opens", "events", ("open",), "bot", True),
        Count("bot_clicks", "events", ("click",), "bot", False),
    )
}

RATES: dict[str, Rate] = {
    r.name: r
    for r in (
        Rate("open_rate", "opens_unique", "delivered", True),
        Rate("ctr", "clicks_unique", "delivered"),
        Rate("click_to_open_rate", "clicks_unique", "opens_unique", True),
        Rate("open_rate_all", "opens_unique_all", "delivered", True),
        Rate("open_rate_human", "opens_unique_human", "delivered", True),
        Rate("ctr_all", "clicks_unique_all", "delivered"),
        Rate("ctr_human", "clicks_unique_human", "delivered"),
    )
}

PRODUCT_COUNTS = ("delivered", "opens_total", "opens_unique", "clicks_total", "clicks_unique")
PRODUCT_RATES = ("open_rate", "ctr", "click_to_open_rate")
EXCLUDED_COUNTS = ("bot_opens_excluded", "bot_clicks_excluded")
COMPARISON_COUNTS = tuple(f"{m}_{side}" for side in ("all", "human") for m in PRODUCT_COUNTS[1:])
COMPARISON_RATES = ("open_rate_all", "open_rate_human", "ctr_all", "ctr_human")
MESSAGE_COUNTS = PRODUCT_COUNTS + EXCLUDED_COUNTS + COMPARISON_COUNTS

#: Key of a stored partition. ``in_window`` and ``bot_filter_applied`` ride along in computed rows.
PARTITION_KEY = ("tenant_id", "channel", "send_date")
# Input columns the computation reads (everything else is left alone, not copied).
MESSAGE_COLUMNS = tuple(c for c in MESSAGE_CONTEXT if c != "link_count")
EVENT_COLUMNS = ("event_id", "tenant_id", "message_id", "type", "occurred_at", "bot_kind")

ModuleGrain = Literal["message", "segment", "day", "event"]


@dataclass(frozen=True)
class Module:
    """A metrics table: partition rows grouped by ``keys`` (besides tenant and channel)."""

    table: str
    keys: tuple[str, ...]
    grain: ModuleGrain
    counts: tuple[str, ...] = MESSAGE_COUNTS
    rates: tuple[str, ...] = PRODUCT_RATES + COMPARISON_RATES
    product: bool = True  # one of the four tables of PRODUCT.md
    description: str = ""

    @property
    def partition_columns(self) -> list[str]:
        """Columns of a stored partition row."""
        return [*PARTITION_KEY, *self.keys, *self.counts, "bot_filter_applied"]

    @property
    def computed_columns(self) -> list[str]:
        """Columns of a freshly computed partition row (stored ones plus ``in_window``)."""
        return [*PARTITION_KEY, *self.keys, "in_window", *self.counts, "bot_filter_applied"]

    def table_columns(self, comparison: bool = False) -> list[str]:
        """Columns of the module table: PRODUCT.md's, plus both sides if ``comparison``."""
        cols = ["tenant_id", *self.keys, "channel"]
        if self.counts != MESSAGE_COUNTS:
            return [*cols, *self.counts, "bot_filter_applied"]
        cols += [*PRODUCT_COUNTS, *PRODUCT_RATES, *EXCLUDED_COUNTS, "bot_filter_applied"]
        if comparison:
            cols += [*COMPARISON_COUNTS, *COMPARISON_RATES]
        return cols


MODULES: dict[str, Module] = {
    m.table: m
    for m in (
        Module("campaign_metrics", ("campaign_id",), "message", description="per campaign"),
        Module("automation_metrics", ("automation_id",), "message", description="per automation"),
        Module(
            "segment_metrics",
            ("segment_id",),
            "segment",
            description="messages to the segment's contacts",
        ),
        Module(
            "dashboard_daily",
            ("date",),
            "day",
            description="delivered by UTC date of delivered_at; events by UTC date of occurred_at",
        ),
        Module(
            "channel_totals",
            (),
            "message",
            product=False,
            description="all messages of the channel (report and metrics show)",
        ),
        Module(
            "bot_interactions",
            ("recipient_domain", "bot_kind"),
            "event",
            counts=("bot_opens", "bot_clicks", *EXCLUDED_COUNTS),
            rates=(),
            product=False,
            description="bot events by recipient domain and bot kind (report)",
        ),
    )
}
PRODUCT_TABLES = tuple(name for name, m in MODULES.items() if m.product)
NO_DOMAIN = "(none)"
UNKNOWN_KIND = "unknown"


def status_mask(status: str, is_bot: Any, filter_on: Any) -> Any:
    """The status predicate over ``is_bot`` and ``filter_on`` (numpy, pandas or Spark)."""
    return STATUSES[status](is_bot, filter_on)


def count_mask(count: Count, event_type: Any, is_bot: Any, filter_on: Any) -> Any:
    """Events matching ``count``: its types and its status. ``event_type`` has ``isin``."""
    return event_type.isin(list(count.types)) & status_mask(count.status, is_bot, filter_on)


# --- window -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """``[start, end)`` of send times; events count before ``end`` (the as-of time)."""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def ending(cls, as_of: pd.Timestamp | str | None = None, days: int = 30) -> Window:
        """The ``days``-day window ending at ``as_of`` (default: now)."""
        end = to_utc(as_of) if as_of is not None else pd.Timestamp.now(tz="UTC")
        return cls(end - pd.Timedelta(days=days), end)

    @property
    def first_date(self) -> date:
        """First send date the window touches (stored whole)."""
        return self.start.date()

    @property
    def last_date(self) -> date:
        """Last send date the window touches."""
        return (self.end - pd.Timedelta(1, "ns")).date()

    @property
    def stored_start(self) -> pd.Timestamp:
        """Start of the first send date: stored partitions are whole days."""
        return self.start.floor("D")

    def send_dates(self) -> list[date]:
        """Every send date whose partition a recompute of this window rewrites."""
        n = (self.last_date - self.first_date).days + 1
        return [self.first_date + timedelta(days=i) for i in range(max(n, 0))]


def to_utc(value: pd.Timestamp | str) -> pd.Timestamp:
    """A UTC timestamp; a value without an offset is UTC (PRODUCT.md)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise BotfilterError(f"cannot read {value!r} as a timestamp (use ISO-8601)") from exc
    if ts is pd.NaT:
        raise BotfilterError(f"cannot read {value!r} as a timestamp (use ISO-8601)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
