"""The metric definitions of PRODUCT.md, once: a declarative spec plus pure pandas functions.

:mod:`jobs.metrics.spec` holds the declarative part (statuses, counts, rates, modules, window);
:mod:`jobs.metrics.compute` runs it with pandas/numpy, in the local engine and, tenant by tenant,
on Spark executors (:mod:`jobs.spark.metrics`). Both are re-exported here: ``from jobs import metrics as M`` sees every name.

How the numbers are built (every engine follows these steps; see jobs/README.md):

1. **Window.** Messages with ``sent_at`` in ``[as_of - days, as_of)`` count; their events count when
   ``occurred_at < as_of`` and the message was delivered. Stored partitions are whole UTC send
   dates, so the engine also computes the part of the first send date that lies before the window
   start and marks it ``in_window = False``: it goes to the store (whose partitions never hold half
   a day) but not into the window's tables.
2. **Event status.** ``is_bot`` comes from the scores; ``filter_on`` is the tenant's setting for the
   message's channel. :data:`STATUSES` turns both into the masks ``counted`` (not left out by the
   filter), ``excluded`` (left out by the filter), ``all``, ``human`` and ``bot``.
3. **Counts.** Each :class:`Count` is an event-type set, a status and a grain: ``events`` counts
   matching events, ``messages`` counts messages (or message-days, for the dashboard) with at least
   one matching event, ``delivered`` counts delivered messages. A message belongs to exactly one
   send date, so all of these are additive across send-date partitions.
4. **Partitions.** Counts are summed per (tenant_id, channel, send_date) and module key
   (:data:`MODULES`): campaign, automation, segment (messages to the segment's contacts), the
   activity date (dashboard: delivered by the date of ``delivered_at``, events by the date of
   ``occurred_at``) and, for the report, recipient domain and bot kind.
5. **Tables.** :func:`rollup` sums partitions and derives the :data:`RATES` from the sums; open
   columns are empty for SMS; ``bot_filter_applied`` holds when every summed partition was computed
   with the filter on.

Status and type predicates are written with ``&``, ``~`` and ``isin`` only, so the same callables
build pandas/numpy masks and column expressions of other engines (Spark ``Column``).
"""

from jobs.metrics.compute import (
    Key,
    MissingScores,
    Partitions,
    coerce,
    compute_partitions,
    event_positions,
    first_reason,
    key_positions,
    parse_reasons,
    rollup,
    score_positions,
    stored_rows,
    summary_grid,
    top_reasons,
    window_rows,
)
from jobs.metrics.spec import (
    COMPARISON_COUNTS,
    COMPARISON_RATES,
    COUNTS,
    DAY_NS,
    EVENT_COLUMNS,
    EXCLUDED_COUNTS,
    MESSAGE_COLUMNS,
    MESSAGE_COUNTS,
    MODULES,
    NO_DOMAIN,
    PARTITION_KEY,
    PRODUCT_COUNTS,
    PRODUCT_RATES,
    PRODUCT_TABLES,
    RATES,
    SMS,
    STATUSES,
    UNKNOWN_KIND,
    Count,
    Grain,
    Module,
    ModuleGrain,
    Rate,
    StatusFn,
    Window,
    count_mask,
    status_mask,
    to_utc,
)

__all__ = [
    "DAY_NS",
    "SMS",
    "StatusFn",
    "STATUSES",
    "Grain",
    "Count",
    "Rate",
    "COUNTS",
    "RATES",
    "PRODUCT_COUNTS",
    "PRODUCT_RATES",
    "EXCLUDED_COUNTS",
    "COMPARISON_COUNTS",
    "COMPARISON_RATES",
    "MESSAGE_COUNTS",
    "PARTITION_KEY",
    "MESSAGE_COLUMNS",
    "EVENT_COLUMNS",
    "ModuleGrain",
    "Module",
    "MODULES",
    "PRODUCT_TABLES",
    "NO_DOMAIN",
    "UNKNOWN_KIND",
    "status_mask",
    "count_mask",
    "Window",
    "to_utc",
    "Partitions",
    "MissingScores",
    "Key",
    "parse_reasons",
    "top_reasons",
    "first_reason",
    "key_positions",
    "event_positions",
    "score_positions",
    "compute_partitions",
    "summary_grid",
    "coerce",
    "stored_rows",
    "window_rows",
    "rollup",
]
