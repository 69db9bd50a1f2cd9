"""A list change's dry run: which stored verdicts it flips, and open rate and CTR before and
after per channel, from the stored scores and the events of the window (no recompute, nothing
saved).

Counts follow :mod:`jobs.metrics`: ``opens_unique`` is messages with an open or a click (email
only), ``clicks_unique`` messages with a click, rates over delivered messages. "Human" figures
are what a tenant with the filter on sees; ``filter_on`` says whether that is the case now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from contract.schema import CHANNELS
from jobs.lists.rules import AsnLookup, Entry, override_masks


def verdicts(
    events: pd.DataFrame,
    model_is_bot: np.ndarray,
    entries: Sequence[Entry],
    at: pd.Timestamp,
    asn_lookup: AsnLookup | None,
) -> np.ndarray:
    """``is_bot`` per event once ``entries`` are applied to the model's verdicts."""
    allow, block = override_masks(events, entries, at, asn_lookup)
    out = np.asarray(model_is_bot, dtype=bool).copy()
    out[block] = True
    out[allow] = False  # the allow list wins, as in override_reasons
    return out


def _messages(codes: np.ndarray, size: int) -> int:
    """Distinct messages among ``codes`` (a count per message: linear, no sort)."""
    return int(np.count_nonzero(np.bincount(codes, minlength=size))) if codes.size else 0


def _side(
    codes: np.ndarray, click: np.ndarray, human: np.ndarray, size: int, delivered: int, email: bool
) -> dict[str, Any]:
    """One side's counts over one channel's events (their message codes and click flags)."""
    opened = _messages(codes[human], size) if email else None
    clicked = _messages(codes[human & click], size)
    return {
        "opens_total": int((human & ~click).sum()) if email else None,
        "clicks_total": int((human & click).sum()),
        "opens_unique": opened,
        "clicks_unique": clicked,
        "open_rate": opened / delivered if opened is not None and delivered else None,
        "ctr": clicked / delivered if delivered else None,
    }


def dry_run(
    events: pd.DataFrame,
    model_is_bot: np.ndarray,
    delivered: Mapping[str, int],
    current: Sequence[Entry],
    proposed: Sequence[Entry],
    filters: Mapping[str, bool],
    at: pd.Timestamp | None = None,
    asn_lookup: AsnLookup | None = None,
) -> dict[str, Any]:
    """What going from the ``current`` entries to the ``proposed`` ones changes.

    ``events``: the tenant's window events with ``channel``, ``type``, ``message_code`` (an
    integer per message) and the entry columns; ``model_is_bot``: their stored verdicts (an
    event without a stored score counts as a person, as the metrics count it).
    """
    when = pd.Timestamp.now(tz="UTC") if at is None else at
    before = verdicts(events, model_is_bot, current, when, asn_lookup)
    after = verdicts(events, model_is_bot, proposed, when, asn_lookup)
    codes = events["message_code"].to_numpy()
    size = int(codes.max()) + 1 if codes.size else 0
    click = (events["type"] == "click").to_numpy()
    out: dict[str, Any] = {"events": len(events), "channels": {}}
    for c in CHANNELS:
        mine = (events["channel"] == c).to_numpy()
        b, a, k, m = before[mine], after[mine], click[mine], codes[mine]
        sent = int(delivered.get(c, 0))
        email = c == "email"
        out["channels"][c] = {
            "filter_on": bool(filters.get(c, False)),
            "delivered": sent,
            "to_bot": {"open": int((~b & a & ~k).sum()), "click": int((~b & a & k).sum())},
            "to_person": {"open": int((b & ~a & ~k).sum()), "click": int((b & ~a & k).sum())},
            "before": _side(m, k, ~b, size, sent, email),
            "after": _side(m, k, ~a, size, sent, email),
        }
    out["changed"] = int((before != after).sum())
    return out
