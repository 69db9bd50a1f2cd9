"""Training data from weak labels: the label model's P(bot) becomes each event's label, its
confidence the event's weight (``training.fit`` mixes in a labelled world when asked).

Weak labels train; they judge only when nothing else can. When the data's events carry their own
labels (every event), those stay the events' ``label`` and ``bot_kind``, which the test report
and the gate read: a model judged on the weak labels it was trained to reproduce looks as good as
the label model it copies (a weak-label model displaced a better champion that way)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import BotfilterError
from labelling.label import CLASSES, VOTE_PREFIX, weak_labels
from labelling.model import ABSTAIN, LabelModel

WEAK = "weak"
# What the test report and the gate judge a model on (the run's ``judged_on`` parameter).
JUDGED_ON_DATA = "data labels"
JUDGED_ON_WEAK = "weak labels"
# The bot kind the kind head learns from (``training.kind.fit_kind``): the weak labels' kind,
# while ``bot_kind`` stays the data's own when it has labels.
TRAIN_KIND = "train_bot_kind"
# Rows whose weak label is this unsure teach the model nothing but noise; they keep weight 0.
MIN_CONFIDENCE = 0.2
# ``None`` as an array: what ``np.where`` makes of a bare ``None`` (the typed form numpy accepts).
_NULL = np.array(None, dtype=object)


def read_labels(path: Path) -> pd.DataFrame:
    """A weak-label file (``botfilter label`` output, or any with the same three columns), with
    ``covered``: whether the label is evidence. In ``botfilter label``'s file an event no
    function voted on holds the label model's prior, not evidence (its ``lf_*`` votes all
    abstain), as with ``--labels weak``; a file without votes labels every row it holds."""
    if not path.exists():
        raise BotfilterError(f"--labels {path}: file not found (or say --labels weak)")
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
        elif path.suffix == ".csv":
            table = pd.read_csv(path, dtype={"event_id": str, "tenant_id": str})
        else:
            raise BotfilterError(f"--labels {path}: must be .parquet or .csv (or 'weak')")
    except (OSError, ValueError) as exc:
        raise BotfilterError(f"--labels {path}: cannot read it: {exc}") from exc
    need = ("event_id", "tenant_id", "label_bot_probability")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise BotfilterError(f"--labels {path}: missing column {missing[0]}")
    proba = pd.to_numeric(table["label_bot_probability"], errors="coerce")
    if proba.isna().any() or not proba.between(0, 1).all():
        raise BotfilterError(f"--labels {path}: label_bot_probability must be a number in [0, 1]")
    # Identifiers are text (PRODUCT.md), however the file stored them; one label per event.
    ids = {c: table[c].astype("string").astype(object) for c in ("event_id", "tenant_id")}
    votes = [c for c in table.columns if str(c).startswith(VOTE_PREFIX)]
    covered = (
        (table[votes].apply(pd.to_numeric, errors="coerce").fillna(ABSTAIN) != ABSTAIN).any(axis=1)
        if votes
        else pd.Series(True, index=table.index)
    )
    out = pd.DataFrame({**ids, "label_bot_probability": proba, "covered": covered.to_numpy()})
    if out[["event_id", "tenant_id"]].isna().any().any():
        raise BotfilterError(f"--labels {path}: event_id and tenant_id must be set on every row")
    repeated = out.duplicated(["tenant_id", "event_id"])
    if repeated.any():
        first = out.loc[repeated].iloc[0]
        raise BotfilterError(
            f"--labels {path}: event {first['event_id']!r} of tenant {first['tenant_id']!r} "
            "is labelled more than once"
        )
    return out


def _bot_kind(model: LabelModel, votes: np.ndarray) -> np.ndarray:
    """The most likely kind of bot per event (empty for people)."""
    post = model.predict_classes(votes)
    h = model.human_classes
    kind = np.asarray(CLASSES, dtype=object)[h + post[:, h:].argmax(axis=1)]
    return np.where(post[:, h:].sum(axis=1) >= 0.5, kind, _NULL)


def apply_weak_labels(
    ctx: pd.DataFrame, feats: pd.DataFrame, labels: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, dict[str, Any]]:
    """(ctx, features, y, weight, info): ``y`` and ``weight`` from the weak labels (the model is
    fitted and its cuts chosen on them), ``ctx[TRAIN_KIND]`` their kinds.

    ``labels`` is ``"weak"`` (label here with the registered functions) or a weak-label file;
    events the file does not label are left out. When every event kept carries its own label,
    ``ctx`` keeps its ``label`` and ``bot_kind``: the test report and the gate judge on them
    (``info["judged_on"]`` is :data:`JUDGED_ON_DATA`). Otherwise ``ctx`` gets ``label`` and
    ``bot_kind`` from the weak labels, and its simulator ``family`` tag is dropped (against weak
    labels it named bot families as people); ``info["judged_on"]`` is :data:`JUDGED_ON_WEAK`.
    ``info`` also counts the events of weight 0 (no function voted; too unsure).
    """
    # a file's path absolute: `botfilter promote` rereads it from wherever it is typed
    info: dict[str, Any] = {"labels": WEAK if str(labels) == WEAK else str(Path(labels).resolve())}
    covered: np.ndarray = np.ones(len(ctx), dtype=bool)
    if str(labels) == WEAK:
        weak = weak_labels(ctx, feats)
        proba = weak.proba
        kind = _bot_kind(weak.model, weak.votes)
        info["weak_report"] = weak.report()
        # An event no function voted on gets the prior as its label: that is no evidence, and
        # as a confident "human" it would teach the model to miss whatever the functions miss.
        covered = (weak.votes != ABSTAIN).any(axis=1)
    else:
        table = read_labels(Path(labels))
        keyed = ctx[["tenant_id", "event_id"]].merge(
            table, on=["tenant_id", "event_id"], how="left", validate="one_to_one"
        )
        found = keyed["label_bot_probability"].notna().to_numpy()
        if not found.any():
            raise BotfilterError(f"--labels {labels}: labels none of the data's events")
        info["unlabelled_events_left_out"] = int((~found).sum())
        ctx, feats = ctx[found].reset_index(drop=True), feats[found].reset_index(drop=True)
        proba = keyed["label_bot_probability"].to_numpy(dtype=np.float64)[found]
        covered = keyed["covered"].to_numpy(dtype=bool)[found]
        kind = np.where(proba >= 0.5, "weak", _NULL)
    y = proba >= 0.5
    confidence = np.abs(2.0 * proba - 1.0)
    unsure = confidence < MIN_CONFIDENCE
    weight = np.where(~unsure & covered, confidence, 0.0)
    info["events_without_a_vote"] = int((~covered).sum())
    info["events_too_unsure"] = int((covered & unsure).sum())
    own = "label" in ctx.columns and len(ctx) > 0 and bool(ctx["label"].notna().all())
    info["judged_on"] = JUDGED_ON_DATA if own else JUDGED_ON_WEAK
    ctx = ctx.assign(**{TRAIN_KIND: kind})
    if not own:
        weak_cols = {"label": np.where(y, "bot", "human").astype(object), "bot_kind": kind}
        ctx = ctx.drop(columns=["family"], errors="ignore").assign(**weak_cols)
    info["weak_bot_share"] = float(y.mean()) if len(y) else 0.0
    info["weak_events"] = int(len(y))
    return ctx, feats, y, weight, info
