"""Table schemas from PRODUCT.md, defined once.

Everything that names a column of an input table (the loader, the validator, the simulator, the
API's request model and the Spark engine) reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.errors import BotfilterError

Kind = Literal["str", "timestamp", "int", "bool", "float"]


@dataclass(frozen=True)
class Column:
    """One column of an input table."""

    name: str
    kind: Kind
    required: bool
    description: str
    choices: tuple[str, ...] | None = None  # allowed values, for enumerations


def is_identifier(column: Column) -> bool:
    """Whether ``column`` holds an identifier: a text column named ``*_id`` (as the online API's
    screen tells them)."""
    return column.kind == "str" and column.name.endswith("_id")


@dataclass(frozen=True)
class TableSchema:
    """One input table: its columns and the ones that must be present."""

    name: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def identifiers(self) -> list[str]:
        """The identifier columns (text named ``*_id``): PRODUCT.md's "Identifiers are strings"
        (a number is read as its digits; an object, an array or a boolean is refused)."""
        return [c.name for c in self.columns if is_identifier(c)]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


CHANNELS = ("email", "sms")
EVENT_TYPES = ("open", "click")
LABELS = ("bot", "human")
BOT_KINDS = ("security_scanner", "privacy_prefetch", "link_preview", "crawler")

MESSAGES = TableSchema(
    "messages",
    (
        Column("message_id", "str", True, "Unique across the tenant."),
        Column("tenant_id", "str", True, "The platform customer account."),
        Column("channel", "str", True, "email or sms.", CHANNELS),
        Column("campaign_id", "str", False, "Set for campaign sends."),
        Column("automation_id", "str", False, "Set for automation (flow) sends."),
        Column("contact_id", "str", True, "The recipient."),
        Column("recipient_domain", "str", False, "Part after @ of the address; empty for SMS."),
        Column("sent_at", "timestamp", True, "When the message was sent."),
        Column("delivered_at", "timestamp", False, "Empty when not delivered."),
        Column("link_count", "int", False, "Tracked links in the message (>= 0)."),
    ),
)

EVENTS = TableSchema(
    "events",
    (
        Column("event_id", "str", True, "Unique; a repeat is a duplicate delivery."),
        Column("tenant_id", "str", True, "The platform customer account."),
        Column("message_id", "str", True, "The message it belongs to."),
        Column("type", "str", True, "open or click (SMS has clicks only).", EVENT_TYPES),
        Column("occurred_at", "timestamp", True, "When the open or click happened."),
        Column("ip", "str", False, "IPv4 or IPv6 of the requester."),
        Column("user_agent", "str", False, "HTTP User-Agent."),
        Column("url", "str", False, "The tracked link's target, for clicks."),
        Column("link_position", "int", False, "0-based position of the link in the message."),
        Column("is_hidden_link", "bool", False, "Click on an invisible honeypot link."),
        Column("http_method", "str", False, "GET, HEAD, ..."),
        Column("asn", "int", False, "Autonomous system, when ingestion already resolved it."),
        Column("label", "str", False, "Training/evaluation only: bot or human.", LABELS),
        Column("bot_kind", "str", False, "Training/evaluation only: kind of bot."),
    ),
)

SEGMENTS = TableSchema(
    "segments",
    (
        Column("tenant_id", "str", True, "The platform customer account."),
        Column("segment_id", "str", True, "The segment."),
        Column("contact_id", "str", True, "A contact in the segment."),
    ),
)

SETTINGS = TableSchema(
    "settings",
    (
        Column("tenant_id", "str", True, "The platform customer account."),
        Column("exclude_bots_email", "bool", True, "Exclude bot interactions from Email."),
        Column("exclude_bots_sms", "bool", True, "Exclude bot interactions from SMS."),
        Column("updated_at", "timestamp", True, "When the setting last changed."),
    ),
)

TABLES: dict[str, TableSchema] = {t.name: t for t in (MESSAGES, EVENTS, SEGMENTS, SETTINGS)}
REQUIRED_TABLES = ("messages", "events")
FILE_FORMATS = (".parquet", ".csv", ".jsonl")

# Message columns the API needs alongside each event (the "message context" of issue 4).
MESSAGE_CONTEXT = (
    "message_id",
    "tenant_id",
    "channel",
    "campaign_id",
    "automation_id",
    "contact_id",
    "recipient_domain",
    "sent_at",
    "delivered_at",
    "link_count",
)

# The scores table of PRODUCT.md.
SCORE_COLUMNS = ("event_id", "bot_score", "is_bot", "reasons", "model_version", "bot_kind")

# The quarantine table written by `botfilter validate` (one row per refused input row).
QUARANTINE_COLUMNS = ("table", "row_number", "record", "reason")


def find_table_files(data_dir: Path) -> dict[str, Path]:
    """The file of each table present in ``data_dir`` (messages and events are required)."""
    if not data_dir.is_dir():
        raise BotfilterError(f"data directory not found: {data_dir}")
    found: dict[str, Path] = {}
    # extensions in any case (messages.PARQUET); the table name as written
    entries = sorted(p for p in data_dir.iterdir() if p.suffix.lower() in FILE_FORMATS)
    for name in TABLES:
        folders = [p for p in entries if p.stem == name and not p.is_file()]
        if folders:
            # Not "no such table": a directory of Parquet parts is read by --engine spark only
            # (from a URI), and an optional table would otherwise be taken for absent silently.
            raise BotfilterError(
                f"{folders[0]}: is a directory, not a file (give one file per table; "
                "--engine spark reads a directory of Parquet parts from a URI: file://...)"
            )
        paths = [p for p in entries if p.stem == name and p.is_file()]
        if len(paths) > 1:
            names = " and ".join(p.name for p in paths)
            raise BotfilterError(f"{data_dir}: table {name} given twice ({names}); keep one")
        if paths:
            found[name] = paths[0]
        elif name in REQUIRED_TABLES:
            expected = ", ".join(f"{name}{ext}" for ext in FILE_FORMATS)
            raise BotfilterError(f"{data_dir}: no {name} table (expected one of {expected})")
    return found
