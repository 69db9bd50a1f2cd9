"""Request and response models of the API, built from the contract's column definitions.

Nothing here lists a field by hand: an event of ``POST /score`` carries the columns of
``contract.schema.EVENTS`` (minus the training-only label columns) and its message context
(``MESSAGE_CONTEXT``, typed by ``contract.schema.MESSAGES``); a result carries ``SCORE_COLUMNS``.

The event model checks JSON types only (is ``link_count`` a number? is ``sent_at`` text or an
integer?). Whether a value is acceptable (a known channel, a real timestamp, a valid IP...) is
decided by the contract's validator, exactly as for files, so the API and the batch job accept
the same events.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, WithJsonSchema, create_model

from contract.schema import EVENTS, MESSAGE_CONTEXT, MESSAGES, SCORE_COLUMNS, Column

# Columns of the events table that only training and evaluation read.
TRAINING_ONLY: tuple[str, ...] = ("label", "bot_kind")

_TIMESTAMP_DOC = (
    "ISO-8601 text (an offset, or UTC when none) or integer milliseconds since the epoch."
)


def event_columns() -> tuple[Column, ...]:
    """The columns an API event carries: the event's own, then its message context."""
    own = [c for c in EVENTS.columns if c.name not in TRAINING_ONLY]
    names = {c.name for c in own}
    context = [MESSAGES.column(n) for n in MESSAGE_CONTEXT if n not in names]
    return tuple(own + context)


def _annotation(col: Column) -> Any:
    """JSON type of a column; the contract validator parses the value itself."""
    if col.kind == "timestamp":
        schema: dict[str, Any] = {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}],
            "description": f"{col.description} {_TIMESTAMP_DOC}",
        }
        base: Any = Annotated[str | int, WithJsonSchema(schema)]
    elif col.kind == "int":
        base = int
    elif col.kind == "float":
        base = float
    elif col.kind == "bool":
        base = bool
    elif col.choices:
        choice_schema = {
            "type": "string",
            "enum": list(col.choices),
            "description": col.description,
        }
        base = Annotated[str, WithJsonSchema(choice_schema)]
    else:
        base = str
    if col.required:
        return base, Field(..., description=col.description)
    return base | None, Field(None, description=col.description)


@cache
def event_model() -> type[BaseModel]:
    """One event of a ``POST /score`` request, with its message context."""
    fields = {c.name: _annotation(c) for c in event_columns()}
    return create_model(
        "Event",
        __config__=ConfigDict(extra="allow", coerce_numbers_to_str=True),
        __doc__="An open or click with its message context; extra fields are ignored.",
        **fields,
    )


# JSON types of the scores table of PRODUCT.md; keyed by SCORE_COLUMNS, checked below.
_SCORE_TYPES: dict[str, tuple[Any, str]] = {
    "event_id": (str, "The event, as sent."),
    "bot_score": (float, "Calibrated probability that a bot made the event, in [0, 1]."),
    "is_bot": (bool, "The verdict at the threshold of the event's channel and type."),
    "reasons": (list[str], "Up to 3 features that pushed the score most, strongest first."),
    "model_version": (str, "Registered model that scored the event (name/version)."),
    "bot_kind": (
        str,
        "Which kind of bot (security_scanner, privacy_prefetch, link_preview, crawler); "
        "empty for people.",
    ),
}


@cache
def score_model() -> type[BaseModel]:
    """One scored event: the columns of the scores table."""
    if set(_SCORE_TYPES) != set(SCORE_COLUMNS):
        raise RuntimeError("serving.models._SCORE_TYPES is out of step with SCORE_COLUMNS")
    fields: dict[str, Any] = {
        n: (_SCORE_TYPES[n][0], Field(..., description=_SCORE_TYPES[n][1])) for n in SCORE_COLUMNS
    }
    return create_model("Score", __doc__="The answer for one event.", **fields)


# A bare ``Mozilla/5.0`` HEAD click 5 s after delivery, after an open of the same message: the
# OpenAPI example of a request, and what each worker scores once at start to warm up.
_EXAMPLE_OPEN: dict[str, Any] = {
    "event_id": "example-open",
    "tenant_id": "example",
    "message_id": "m1",
    "type": "open",
    "occurred_at": "2026-10-29T00:19:55Z",
    "ip": "40.94.1.1",
    "user_agent": "Mozilla/5.0",
    "channel": "email",
    "contact_id": "c1",
    "campaign_id": "spring",
    "recipient_domain": "example.com",
    "sent_at": "2026-10-29T00:19:51Z",
    "delivered_at": "2026-10-29T00:19:52Z",
    "link_count": 3,
}
EXAMPLE_EVENTS: tuple[dict[str, Any], ...] = (
    _EXAMPLE_OPEN,
    {
        **_EXAMPLE_OPEN,
        "event_id": "example-click",
        "type": "click",
        "occurred_at": "2026-10-29T00:19:57.1Z",
        "link_position": 0,
        "http_method": "HEAD",
    },
)


class ItemError(BaseModel):
    """An event that breaks the contract, answered in its place; the others are still scored."""

    event_id: str | None = Field(None, description="The event's id when it had a usable one.")
    error: str = Field(..., description="The field and the reason, e.g. 'ip: invalid ip'.")


@cache
def request_model(max_events: int) -> type[RootModel]:
    """The body of ``POST /score``: 1 to ``max_events`` events."""
    item = event_model()
    # The item model is built at run time from the contract: no static type for mypy to see.
    return RootModel[Annotated[list[item], Field(min_length=1, max_length=max_events)]]  # type: ignore[valid-type]


def request_schema(max_events: int) -> dict[str, Any]:
    """JSON schema of the request body with the event schema inlined (no ``$defs``), so that it
    stays valid wherever an OpenAPI document embeds it."""
    schema = request_model(max_events).model_json_schema()
    defs = schema.pop("$defs", {})
    ref = schema["items"].pop("$ref").rsplit("/", 1)[-1]
    schema["items"] = {**defs[ref], **schema["items"]}
    return schema


@cache
def response_model() -> type[RootModel]:
    """The answer of ``POST /score``: one item per event, in the order sent."""
    # The score model is built at run time from the contract: no static type for mypy to see.
    return RootModel[list[score_model() | ItemError]]  # type: ignore[misc,return-value]


class Health(BaseModel):
    """``GET /healthz`` and ``GET /readyz``."""

    status: str = Field(..., description="'ok' / 'ready', or why not.")
    model_version: str | None = Field(None, description="The model answering requests.")
    state: str | None = Field(None, description="Where the window state lives.")


class ReloadResult(BaseModel):
    """``POST /reload``."""

    model_version: str = Field(..., description="The model now answering requests.")
    previous_version: str | None = Field(None, description="The model it replaced.")
    changed: bool = Field(..., description="Whether the version changed.")
