"""The fit step: labelled events in, a calibrated LightGBM model with per-(channel, type)
thresholds out. The data are split by send time: train, validation (calibration and
thresholds), and a test split that only the evaluation sees."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from contract import load
from contract.counts import Report
from contract.validate import Validated
from core.errors import BotfilterError
from core.settings import Settings
from features.definitions import LOOKAHEAD_FEATURES, MODEL_FEATURES
from features.pipeline import Enrichers, build_features, event_context
from labelling.training import JUDGED_ON_DATA, JUDGED_ON_WEAK, TRAIN_KIND, apply_weak_labels
from scoring.model import MIN_CUT, BotModel, threshold_key, vendor_key
from training.report import WorldRows

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
    "seed": 17,
}
NUM_ROUNDS = 200
EARLY_STOPPING = 20
SPLIT = (0.70, 0.15)  # train, validation (calibration + thresholds); the rest is the test split


@dataclass
class Prepared:
    """Event context, features and labels of a labelled data directory."""

    ctx: pd.DataFrame
    features: pd.DataFrame
    y: np.ndarray
    weight: np.ndarray | None = None  # per-event training weight (weak labels' confidence)
    label_info: dict[str, Any] = field(default_factory=dict)  # where the labels came from
    # The delivered campaign messages (:func:`delivered_campaign_messages`), events or not: the
    # denominator of the campaign rates the evaluation compares (None: those with events only)
    messages: pd.DataFrame | None = None
    # The validation counts of the data directory (what was quarantined and why), to print
    report: Report | None = None
    # The worlds mixed in (:func:`mix_in`), in order: the rows of the k-th have WORLD k
    mixed: tuple[MixedWorld, ...] = ()
    # The clean events left out for want of a label (``prepare(..., unlabelled="leave out")``)
    left_out: LeftOut | None = None


REASON_NO_LABEL = "no label (bot/human)"


@dataclass(frozen=True)
class LeftOut:
    """Clean events that ``botfilter evaluate`` leaves out: how many, why, and one of them."""

    events: int
    reason: str
    example_event_id: str
    example_tenant_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self, command: str) -> str:
        """One line for the summary (ids as written: print it on a plain console)."""
        tenant = "" if self.example_tenant_id is None else f" of tenant {self.example_tenant_id!r}"
        s = "" if self.events == 1 else "s"
        return (
            f"left out of the {command}: {self.events} event{s} with {self.reason} "
            f"(e.g. event_id {self.example_event_id!r}{tenant})"
        )


@dataclass(frozen=True)
class MixedWorld:
    """A labelled world mixed into the training data: where it is (resolved), how many events it
    gave, and its validation counts (what was quarantined and why), to print as the data's."""

    path: str
    events: int
    report: Report | None


# The column of ``Prepared.ctx`` and ``Prepared.messages`` that says which world a row comes
# from once worlds are mixed in: 0 the data, k the k-th world mixed in (absent: all the data's).
WORLD = "_world"


def worlds(frame: pd.DataFrame) -> dict[int, np.ndarray]:
    """Row positions of each world of ``frame`` (:data:`WORLD`), in world order."""
    if WORLD not in frame.columns:
        return {0: np.arange(len(frame))}
    groups = frame.groupby(WORLD).indices
    return {int(cast(int, k)): np.asarray(rows) for k, rows in sorted(groups.items())}


def prepare(
    validated: Validated,
    enrichers: Enrichers | None = None,
    labels: str | Path | None = None,
    unlabelled: str = "refuse",
) -> Prepared:
    """Join, featurise and label the clean events of a validated data directory.

    ``labels`` "weak" (or a weak-label file) trains on labels from ``labelling`` instead of the
    events' own ``label`` column, which (when every event has one) still judges the model
    (:func:`labelling.training.apply_weak_labels`, :func:`judged_on`).

    Events without a label: ``unlabelled="refuse"`` (training) fails with one line naming how
    many and one of them: a model trained on the labelled part only would be trained on a
    selection nobody chose. ``"leave out"`` (``botfilter evaluate``) drops them after their
    features are built (their neighbours' features stay those scoring computes) and says so in
    ``Prepared.left_out``, as PRODUCT.md asks for bad input: set aside, said, the run goes on.
    """
    if unlabelled not in ("refuse", "leave out"):
        raise ValueError(f"unlabelled: 'refuse' or 'leave out', not {unlabelled!r}")
    ev = validated.events
    messages = delivered_campaign_messages(validated.messages)
    if labels is not None:
        ctx = event_context(validated.messages, ev).reset_index(drop=True)
        features = build_features(ctx, enrichers or Enrichers.load())
        weak = apply_weak_labels(ctx, features, labels)
        return Prepared(*weak, messages=messages, report=validated.report)
    lacking = ev["label"].isna() if "label" in ev.columns else pd.Series(True, index=ev.index)
    if unlabelled == "refuse" and lacking.any():
        example = ev["event_id"][lacking].iloc[0]
        raise BotfilterError(
            f"events: training needs a label (bot/human) on every event; {int(lacking.sum())} "
            f"lack one (e.g. event_id {example!r}); label them, or train on weak labels "
            "(--labels weak)"
        )
    if lacking.all() and len(ev):
        example = ev["event_id"].iloc[0]
        raise BotfilterError(
            f"events: the evaluation needs labelled events (bot/human); none of {len(ev)} has "
            f"a label (e.g. event_id {example!r}); --unlabelled estimates scanner recall "
            "without labels"
        )
    ctx = event_context(validated.messages, ev).reset_index(drop=True)
    features = build_features(ctx, enrichers or Enrichers.load())
    left_out = None
    if "label" not in ctx.columns:  # (no events at all)
        ctx = ctx.assign(label=pd.Series(dtype=object))
    if lacking.any():
        no_label = ctx["label"].isna().to_numpy()
        first = ctx.loc[no_label].iloc[0]
        tenant = first.get("tenant_id")
        left_out = LeftOut(
            int(no_label.sum()),
            REASON_NO_LABEL,
            str(first["event_id"]),
            None if tenant is None else str(tenant),
        )
        ctx = ctx.loc[~no_label].reset_index(drop=True)
        features = features.loc[~no_label].reset_index(drop=True)
    y = ctx["label"].to_numpy() == "bot"
    return Prepared(ctx, features, y, messages=messages, report=validated.report, left_out=left_out)


def delivered_campaign_messages(messages: pd.DataFrame) -> pd.DataFrame:
    """The delivered messages of campaigns, with or without events: PRODUCT.md's rates divide
    by them (the evaluation took only messages with an event, about a third of them in the
    simulator, and so tripled every campaign rate and its error: an audit)."""
    keep = messages["campaign_id"].notna() & messages["delivered_at"].notna()
    cols = ["tenant_id", "campaign_id", "message_id", "channel", "sent_at"]
    return messages.loc[keep, cols].reset_index(drop=True)


def split_times(
    ctx: pd.DataFrame, split: tuple[float, float] = SPLIT
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The send times where validation and test start (:func:`split_by_send_time`)."""
    sent: pd.Series = pd.to_datetime(ctx["sent_at"], utc=True)
    return pd.Timestamp(sent.quantile(split[0])), pd.Timestamp(sent.quantile(sum(split)))


def split_by_send_time(
    ctx: pd.DataFrame, split: tuple[float, float] = SPLIT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of train / validation / test, by the message's send time (never shuffled).

    Mixed worlds (:data:`WORLD`) are split each by its own send times: split together, a world
    sent later than the data took the whole test split, and the data were never tested."""
    parts: list[tuple[np.ndarray, ...]] = []
    for rows in worlds(ctx).values():
        sent: pd.Series = pd.to_datetime(ctx["sent_at"].iloc[rows], utc=True)
        t1, t2 = split_times(ctx.iloc[rows], split)
        masks = (sent < t1, (sent >= t1) & (sent < t2), sent >= t2)
        parts.append(tuple(rows[m.to_numpy()] for m in masks))
    tr, va, te = (np.sort(np.concatenate([p[i] for p in parts])) for i in range(3))
    return tr, va, te


@dataclass(frozen=True)
class Split:
    """Row positions of the train, validation and test splits of a :class:`Prepared`."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def judged_on(prep: Prepared) -> str:
    """What the test report and the gate judge ``prep``'s model on: the data's own labels, or
    the weak labels it was trained on (recorded by ``apply_weak_labels``; without a record, a
    weighted ``prep`` is taken for weak labels)."""
    recorded = prep.label_info.get("judged_on")
    if recorded is not None:
        return str(recorded)
    return JUDGED_ON_DATA if prep.weight is None else JUDGED_ON_WEAK


def split_rows(prep: Prepared) -> Split:
    """The time-based split of ``prep``'s rows (:func:`split_by_send_time`). A row of weight 0
    carries no label to learn (a weak label no function voted for): it neither trains,
    calibrates nor sets thresholds. It counts in the test split when the data's own labels
    judge the model (:func:`judged_on`): the events no function votes on are where a model of
    weak labels is likeliest wrong, and both models are judged on every test row."""
    tr, va, te = split_by_send_time(prep.ctx)
    if prep.weight is not None:
        w = prep.weight
        tr, va = tr[w[tr] > 0], va[w[va] > 0]
        if judged_on(prep) != JUDGED_ON_DATA:
            te = te[w[te] > 0]
    return Split(tr, va, te)


def mix_in(prep: Prepared, other: Prepared, source: Path) -> Prepared:
    """``prep`` with a labelled world's events added (weight 1 each); records the mix.

    The world's tenants are renamed ``mix<k>:<tenant>`` (k counts the worlds mixed in): two
    simulated worlds, or a world and the data, both have a ``t001``, and their campaigns must not
    merge in the evaluation's campaign rates. (Features are computed per world before, and the
    model never reads a tenant id.) Its rows and messages get :data:`WORLD` k, so that each world
    is split by its own time (:func:`split_by_send_time`)."""
    n, m = len(prep.y), len(other.y)
    w = prep.weight if prep.weight is not None else np.ones(n)
    ow = other.weight if other.weight is not None else np.ones(m)
    path = str(Path(source).resolve())
    paths = [*prep.label_info.get("mix", []), path]
    info = {
        **prep.label_info,
        "mix": paths,
        "mix_events": int(prep.label_info.get("mix_events", 0)) + int(m),
    }
    if "labels" not in info:
        info["labels"] = "data"
    info.setdefault("judged_on", judged_on(prep))
    k = len(paths)
    other_ctx = other.ctx
    if TRAIN_KIND in prep.ctx.columns and "bot_kind" in other_ctx.columns:
        # the kind head learns the weak labels' kinds, and a labelled world's own
        other_ctx = other_ctx.assign(**{TRAIN_KIND: other_ctx["bot_kind"]})

    def tagged(frame: pd.DataFrame, world: int) -> pd.DataFrame:
        """``frame`` with its world; a mixed world's tenants renamed."""
        if world and "tenant_id" in frame:
            frame = frame.assign(tenant_id=f"mix{world}:" + frame["tenant_id"].astype(str))
        return frame if WORLD in frame else frame.assign(**{WORLD: world})

    messages = (
        None
        if prep.messages is None or other.messages is None
        else pd.concat([tagged(prep.messages, 0), tagged(other.messages, k)], ignore_index=True)
    )
    return Prepared(
        pd.concat([tagged(prep.ctx, 0), tagged(other_ctx, k)], ignore_index=True),
        pd.concat([prep.features, other.features], ignore_index=True),
        np.concatenate([prep.y, other.y]),
        np.concatenate([w, ow]),
        info,
        messages,
        prep.report,
        (*prep.mixed, MixedWorld(path, int(m), other.report)),
    )


def mix_param(worlds: Sequence[str]) -> str:
    """The mixed worlds as one MLflow parameter: a single world as its path (as runs before
    several could be mixed logged it), several as a JSON list."""
    return "" if not worlds else worlds[0] if len(worlds) == 1 else json.dumps(list(worlds))


def mix_worlds(param: str) -> list[Path]:
    """The worlds a run mixed in, read back from its :func:`mix_param`."""
    if not param:
        return []
    return [Path(p) for p in json.loads(param)] if param.startswith("[") else [Path(param)]


def load_prepared(
    data_dir: Path, labels: str | Path | None = None, mix: Sequence[Path] = ()
) -> Prepared:
    """The training data of a run: ``data_dir`` labelled as asked (:func:`prepare`), with the
    events of each labelled world of ``mix`` added. A directory given twice (the data as a
    world, or a world twice) is refused: its events would train and be tested twice."""
    given = {Path(data_dir).resolve(): f"--data {data_dir}"}
    for world in mix:
        key = Path(world).resolve()
        if key in given:
            raise BotfilterError(
                f"--mix {world}: the same directory as {given[key]}; give each world once"
            )
        given[key] = f"--mix {world}"
    prep = prepare(load(data_dir), labels=labels)
    for world in mix:
        try:
            other = prepare(load(world))
        except BotfilterError as exc:
            raise BotfilterError(f"--mix {world}: {exc}") from exc
        prep = mix_in(prep, other, world)
    return prep


def rows_per_world(prep: Prepared, rows: np.ndarray, data_dir: Path) -> list[WorldRows]:
    """The events of rows ``rows`` per world: ``data_dir``'s, then each world mixed in."""
    names = [str(Path(data_dir).resolve()), *(w.path for w in prep.mixed)]
    picked = worlds(prep.ctx.iloc[rows])
    return [WorldRows(name, len(picked.get(k, ()))) for k, name in enumerate(names)]


def channel_type_rows(ctx: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """Row positions of each (channel, type) of ``ctx``."""
    groups = ctx.groupby(["channel", "type"]).indices
    return {cast(tuple[str, str], key): np.asarray(rows) for key, rows in groups.items()}


def fit_calibration(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling of raw scores on held-out data."""
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(raw.reshape(-1, 1), y.astype(int))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def threshold_for_precision(proba: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """Threshold with the most recall among those whose precision is >= target.

    Among equally good cuts the highest threshold wins, so no false positive is taken on for
    no recall. None if no cut reaches the target.
    """
    cuts = _precise_cuts(proba, y, target)
    if cuts is None:
        return None
    p, _, tp, ok = cuts
    best = ok[np.argmax(tp[ok])]  # argmax takes the first, i.e. highest-threshold, maximum
    return float(p[best])


def _precise_cuts(
    proba: np.ndarray, y: np.ndarray, target: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Scores and labels by descending score, true positives at each cut, and the positions of
    the cuts whose precision is >= target (None if there is none, or no bot)."""
    if not y.any():
        return None
    order = np.argsort(-proba, kind="stable")
    p, yy = proba[order], y[order]
    tp = np.cumsum(yy)
    prec = tp / np.arange(1, len(yy) + 1)
    # Only cut between distinct scores, so ties share one verdict.
    last_of_tie = np.r_[p[1:] != p[:-1], True]
    ok = np.flatnonzero((prec >= target) & last_of_tie)
    return (p, yy, tp, ok) if len(ok) else None


# A cut may give up this share of the validation bots' recall to sit higher (robust to shift).
RECALL_SLACK = 0.001
# The email-click cut for clicks from a mail-security vendor's published address is at least
# this. There a click may be a person's: the vendor's browser isolation fetches the page at the
# person's click from the addresses that scanned the message (issue 16), and with no open
# before it, such a click looks event for event like a late scanner's check. Elsewhere (hosting,
# transit, a cloud desktop) the fitted cut stands, so a scanner nobody lists is still caught.
# Chosen on the suite's validation worlds only (docs/benchmarks.md, 2026-12-05, thirtieth
# session): 0.80-0.95 kept every family of people under 2% with two independent training draws.
SECURITY_VENDOR_CLICK_CUT = 0.85


@dataclass(frozen=True)
class CutChoice:
    """One threshold and how it was chosen (logged to MLflow as thresholds_how.json)."""

    cut: float
    method: str
    precision: float
    recall: float
    gap: tuple[float, float]  # the lowest flagged and the highest unflagged validation score

    def as_dict(self) -> dict[str, Any]:
        return {
            "cut": self.cut,
            "method": self.method,
            "precision": self.precision,
            "recall": self.recall,
            "gap": list(self.gap),
        }


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return float(np.log(p / (1 - p)))


def pick_cut(
    proba: np.ndarray, y: np.ndarray, target: float, slack: float = RECALL_SLACK
) -> CutChoice | None:
    """A cut robust to shift: the highest one whose precision meets ``target`` and whose recall is
    within ``slack`` of the best such cut's, placed in the gap to the next lower score: at the
    calibrated 0.5 when the gap holds it, else in its middle (log-odds); never below ``MIN_CUT``.
    None if no cut reaches the target."""
    cuts = _precise_cuts(proba, y, target)
    if cuts is None:
        return None
    p, yy, tp, ok = cuts
    bots = int(yy.sum())
    best_tp = int(tp[ok].max())
    # The first (highest) cut whose recall is within the slack of the best.
    keep = ok[tp[ok] >= best_tp - slack * bots][0]
    lo_flagged = float(p[keep])
    hi_unflagged = float(p[keep + 1]) if keep + 1 < len(p) else 0.0
    method = "highest cut within recall slack" if tp[keep] < best_tp else "highest cut, best recall"
    cut = lo_flagged
    if hi_unflagged < MIN_CUT <= lo_flagged:
        # Every cut in the gap scores the same on validation; the calibrated 0.5 is where the
        # model's own odds turn, so a shift that moves people up or bots down costs least there.
        # (The log-odds middle of a gap from 0.3 to 0.99 is 0.87: on a small validation split it
        # left bots of the shifted world unflagged, campaign CTR off by 1.9 pp against 0.7.)
        cut = MIN_CUT
        method += ", the calibrated 0.5 inside the gap"
    elif hi_unflagged > 0.0:
        cut = float(1 / (1 + np.exp(-(_logit(lo_flagged) + _logit(hi_unflagged)) / 2)))
        method += ", middle of the gap"
    if cut < MIN_CUT:
        cut, method = MIN_CUT, method + f", raised to the {MIN_CUT} floor"
    flagged = proba >= cut
    return CutChoice(
        cut,
        method,
        float((flagged & y).sum() / max(int(flagged.sum()), 1)),
        float((flagged & y).sum() / bots),
        (lo_flagged, hi_unflagged),
    )


def select_thresholds(
    proba: np.ndarray,
    y: np.ndarray,
    ctx: pd.DataFrame,
    target: float,
    min_bots: int = 30,
    slack: float = RECALL_SLACK,
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """A cut per (channel, type) (:func:`pick_cut`), with a global fallback, and how each was
    chosen."""
    how: dict[str, dict[str, Any]] = {}
    default = pick_cut(proba, y, target, slack)
    if default is None:
        thresholds = {"default": MIN_CUT}
        how["default"] = {"cut": MIN_CUT, "method": f"no cut reaches {target}: the floor"}
    else:
        thresholds = {"default": default.cut}
        how["default"] = default.as_dict()
    for (ch, ty), idx in channel_type_rows(ctx).items():
        key = threshold_key(ch, ty)
        choice = pick_cut(proba[idx], y[idx], target, slack) if y[idx].sum() >= min_bots else None
        if choice is None:
            thresholds[key] = thresholds["default"]
            why = "too few bots" if y[idx].sum() < min_bots else f"no cut reaches {target}"
            how[key] = {"cut": thresholds[key], "method": f"{why}: the default cut"}
        else:
            thresholds[key] = choice.cut
            how[key] = choice.as_dict()
    click = threshold_key("email", "click")
    if click in thresholds:
        cut = max(thresholds[click], SECURITY_VENDOR_CLICK_CUT)
        thresholds[vendor_key("email", "click")] = cut
        how[vendor_key("email", "click")] = {
            "cut": cut,
            "method": f"the {click} cut raised to {SECURITY_VENDOR_CLICK_CUT} for clicks from a "
            "mail-security vendor's address, where people click through its browser isolation",
        }
    return thresholds, how


def choose_thresholds(
    proba: np.ndarray, y: np.ndarray, ctx: pd.DataFrame, target: float, min_bots: int = 30
) -> dict[str, float]:
    """A threshold per (channel, type) for the target precision, with a global fallback."""
    return select_thresholds(proba, y, ctx, target, min_bots)[0]


@dataclass(frozen=True)
class FitInfo:
    """How a model was fitted: what is logged beside it, and the rows left for the test."""

    params: dict[str, Any]
    best_iteration: int
    split: dict[str, int]  # rows per split: train, valid, test
    test_idx: np.ndarray
    thresholds_how: dict[str, dict[str, Any]]  # per threshold key, how its cut was chosen


def _fit_head(
    prep: Prepared,
    names: list[str],
    rows: Split,
    settings: Settings,
    params: dict[str, Any],
    slack: float = RECALL_SLACK,
) -> tuple[BotModel, dict[str, dict[str, Any]], int]:
    """A booster on features ``names``, calibrated and thresholded on the validation split;
    with how each cut was chosen and the best iteration."""
    tr, va = rows.train, rows.valid
    X = prep.features[names].to_numpy(dtype=np.float64)
    w = prep.weight
    dtrain = lgb.Dataset(
        X[tr],
        prep.y[tr].astype(int),
        weight=None if w is None else w[tr],
        feature_name=names,
        free_raw_data=False,
    )
    dvalid = lgb.Dataset(
        X[va], prep.y[va].astype(int), weight=None if w is None else w[va], reference=dtrain
    )
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=NUM_ROUNDS,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
    )
    best = booster.best_iteration or booster.num_trees()
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    model = BotModel(booster, names, (1.0, 0.0), {}, "candidate", settings.threads)
    raw_va = model.raw_score(X[va])
    model.calibration = fit_calibration(raw_va, prep.y[va])
    model.thresholds, how = select_thresholds(
        model.calibrate(raw_va),
        prep.y[va],
        prep.ctx.iloc[va],
        settings.target_precision,
        slack=slack,
    )
    return model, how, best


def fit_model(
    prep: Prepared,
    settings: Settings,
    params: dict[str, Any] | None = None,
    recall_slack: float = RECALL_SLACK,
) -> tuple[BotModel, FitInfo]:
    """Fit booster, calibration and thresholds on the train/validation splits (``recall_slack``:
    see :func:`pick_cut`)."""
    rows = split_rows(prep)
    tr, va, te = rows.train, rows.valid, rows.test
    if min(len(tr), len(va), len(te)) == 0:
        raise BotfilterError("too little labelled data to split by time into train/validation/test")
    # Calibration and thresholds are fitted on the validation split: it needs both classes too
    # (an all-human validation split was an internal error of the calibration's solver).
    for name, part in (("train", tr), ("validation", va)):
        if prep.y[part].all() or not prep.y[part].any():
            only = "bots" if prep.y[part].all() else "people"
            raise BotfilterError(
                f"the {name} split (by send time) holds only {only}: training needs labelled "
                "bots and people in both the train and the validation split"
            )
    params = {**DEFAULT_PARAMS, "num_threads": settings.threads, **(params or {})}
    model, how, best = _fit_head(prep, list(MODEL_FEATURES), rows, settings, params, recall_slack)
    if any(name in MODEL_FEATURES for name in LOOKAHEAD_FEATURES):
        # A causal head for the rows whose look-ahead window has not passed (BotModel.provisional),
        # fitted apart: training one model on both (look-ahead features masked in a copy of the
        # rows) cost the final answers 1.5-2.7 points of isolated people's FPR on the suite.
        causal = [name for name in MODEL_FEATURES if name not in LOOKAHEAD_FEATURES]
        model.provisional, early, _ = _fit_head(prep, causal, rows, settings, params, recall_slack)
        how |= {f"provisional.{key}": value for key, value in early.items()}
    info = FitInfo(
        params=params,
        best_iteration=best,
        split={"train": len(tr), "valid": len(va), "test": len(te)},
        test_idx=te,
        thresholds_how=how,
    )
    return model, info
