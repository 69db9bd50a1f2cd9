"""Training: LightGBM on a time-based split, Platt calibration, per-(channel, type) thresholds,
everything logged to MLflow, the model registered, and the champion alias moved only by the gate."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from botfilter.errors import BotfilterError
from botfilter.settings import Settings
from features.definitions import MODEL_FEATURES, feature_schema
from features.pipeline import Enrichers, build_features, event_context
from scoring.model import METADATA_FILE, MIN_CUT, BotModel, threshold_key
from training import plots
from training.evaluate import evaluation_report, flat_metrics
from training.gate import GATE, GateDecision, decide, gate_numbers

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


@dataclass
class TrainResult:
    """What a training run produced."""

    model: BotModel
    run_id: str
    version: str
    report: dict[str, Any]
    decision: GateDecision
    extras: dict[str, Any] = field(default_factory=dict)


def prepare(
    validated, enrichers: Enrichers | None = None, labels: str | Path | None = None
) -> Prepared:
    """Join, featurise and label the clean events of a validated data directory.

    ``labels`` "weak" (or a weak-label file) labels them with ``labelling`` instead of the
    events' own ``label`` column, which is then ignored.
    """
    ev = validated.events
    if labels is not None:
        from labelling.training import apply_weak_labels

        ctx = event_context(validated.messages, ev).reset_index(drop=True)
        features = build_features(ctx, enrichers or Enrichers.load())
        return Prepared(*apply_weak_labels(ctx, features, labels))
    if "label" not in ev.columns or ev["label"].isna().any():
        missing = int(ev["label"].isna().sum()) if "label" in ev.columns else len(ev)
        raise BotfilterError(
            f"events: training needs a label (bot/human) on every event; {missing} lack one"
        )
    ctx = event_context(validated.messages, ev).reset_index(drop=True)
    features = build_features(ctx, enrichers or Enrichers.load())
    return Prepared(ctx, features, (ctx["label"].to_numpy() == "bot"))


def split_by_send_time(
    ctx: pd.DataFrame, split: tuple[float, float] = SPLIT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of train / validation / test, by the message's send time (never shuffled)."""
    sent = pd.to_datetime(ctx["sent_at"], utc=True)
    t1, t2 = sent.quantile(split[0]), sent.quantile(split[0] + split[1])
    return (
        np.flatnonzero((sent < t1).to_numpy()),
        np.flatnonzero(((sent >= t1) & (sent < t2)).to_numpy()),
        np.flatnonzero((sent >= t2).to_numpy()),
    )


def fit_calibration(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling of raw scores on held-out data."""
    from sklearn.linear_model import LogisticRegression

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
    proba: np.ndarray, y: np.ndarray, ctx: pd.DataFrame, target: float, min_bots: int = 30
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """A cut per (channel, type) (:func:`pick_cut`), with a global fallback, and how each was
    chosen."""
    how: dict[str, dict[str, Any]] = {}
    default = pick_cut(proba, y, target)
    if default is None:
        thresholds = {"default": MIN_CUT}
        how["default"] = {"cut": MIN_CUT, "method": f"no cut reaches {target}: the floor"}
    else:
        thresholds = {"default": default.cut}
        how["default"] = default.as_dict()
    for (ch, ty), idx in ctx.groupby(["channel", "type"]).indices.items():
        key = threshold_key(ch, ty)
        choice = pick_cut(proba[idx], y[idx], target) if y[idx].sum() >= min_bots else None
        if choice is None:
            thresholds[key] = thresholds["default"]
            why = "too few bots" if y[idx].sum() < min_bots else f"no cut reaches {target}"
            how[key] = {"cut": thresholds[key], "method": f"{why}: the default cut"}
        else:
            thresholds[key] = choice.cut
            how[key] = choice.as_dict()
    return thresholds, how


def choose_thresholds(
    proba: np.ndarray, y: np.ndarray, ctx: pd.DataFrame, target: float, min_bots: int = 30
) -> dict[str, float]:
    """A threshold per (channel, type) for the target precision, with a global fallback."""
    return select_thresholds(proba, y, ctx, target, min_bots)[0]


def fit_model(
    prep: Prepared, settings: Settings, params: dict[str, Any] | None = None
) -> tuple[BotModel, dict[str, Any]]:
    """Fit booster, calibration and thresholds on the train/validation splits."""
    tr, va, te = split_by_send_time(prep.ctx)
    if prep.weight is not None:
        # A row of weight 0 carries no label (a weak label no function voted for): it neither
        # trains, calibrates, sets thresholds nor counts in the evaluation.
        tr, va, te = (idx[prep.weight[idx] > 0] for idx in (tr, va, te))
    if min(len(tr), len(va), len(te)) == 0 or prep.y[tr].all() or not prep.y[tr].any():
        raise BotfilterError("too little labelled data to split by time into train/validation/test")
    X = prep.features[list(MODEL_FEATURES)].to_numpy(dtype=np.float64)
    params = {**DEFAULT_PARAMS, "num_threads": settings.threads, **(params or {})}
    w = prep.weight
    dtrain = lgb.Dataset(
        X[tr],
        prep.y[tr].astype(int),
        weight=None if w is None else w[tr],
        feature_name=list(MODEL_FEATURES),
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
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    model = BotModel(booster, list(MODEL_FEATURES), (1.0, 0.0), {}, "candidate", settings.threads)
    raw_va = model.raw_score(X[va])
    model.calibration = fit_calibration(raw_va, prep.y[va])
    model.thresholds, how = select_thresholds(
        model.calibrate(raw_va), prep.y[va], prep.ctx.iloc[va], settings.target_precision
    )
    info = {
        "params": params,
        "best_iteration": booster.best_iteration or booster.num_trees(),
        "split": {"train": len(tr), "valid": len(va), "test": len(te)},
        "test_idx": te,
        "thresholds_how": how,
    }
    return model, info


def evaluate_model(
    model: BotModel, prep: Prepared, idx: np.ndarray
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Evaluation report of ``model`` on rows ``idx`` of ``prep``."""
    ctx = prep.ctx.iloc[idx]
    feats = prep.features.iloc[idx]
    proba = model.predict_proba(feats)
    is_bot = proba >= model.threshold_for(ctx["channel"].to_numpy(), ctx["type"].to_numpy())
    return evaluation_report(ctx, feats, proba, is_bot), proba, is_bot


EXPERIMENT = "botfilter"


def _use_experiment(settings: Settings) -> None:
    """Select the experiment; with the embedded store its artifacts go under the data home
    (MLflow's default would be ./mlruns in whatever directory the command runs from)."""
    import mlflow

    embedded = settings.mlflow_uri == f"sqlite:///{(settings.home / 'mlflow.db').resolve()}"
    if embedded and mlflow.get_experiment_by_name(EXPERIMENT) is None:
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(EXPERIMENT, artifact_location=settings.artifact_root.as_uri())
    mlflow.set_experiment(EXPERIMENT)


def train(
    settings: Settings,
    data_dir: Path,
    console=None,
    params: dict[str, Any] | None = None,
    labels: str | Path | None = None,
    mix: Path | None = None,
) -> TrainResult:
    """Train on a labelled data directory; log, register, and gate the champion alias.

    ``labels`` "weak" or a weak-label file trains on weak labels instead of the data's own;
    ``mix`` adds a labelled (simulated) world's events to the training data.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from contract import load
    from scoring.registry import champion_uri, configure_mlflow, load_model

    say = console.print if console is not None else (lambda *a, **k: None)
    validated = load(data_dir)
    say(f"loaded {len(validated.events):,} events, {len(validated.messages):,} messages")
    prep = prepare(validated, labels=labels)
    if mix is not None:
        from labelling.training import mix_in

        prep = mix_in(prep, prepare(load(mix)), mix)
    model, info = fit_model(prep, settings, params)
    te = info.pop("test_idx")
    how = info.pop("thresholds_how")
    report, proba, is_bot = evaluate_model(model, prep, te)

    configure_mlflow(settings)
    client = MlflowClient()
    champion = None
    champion_report = None
    try:
        champion = load_model(settings, champion_uri(settings), compile=False)
    except BotfilterError:
        champion = None
    if champion is not None:
        if set(champion.feature_names) <= set(prep.features.columns):
            champion_report, _, _ = evaluate_model(champion, prep, te)
        else:
            say(
                "[yellow]champion uses features this code no longer computes; it cannot be compared[/]"
            )
    decision = decide(
        gate_numbers(report), gate_numbers(champion_report) if champion_report else None, GATE
    )

    _use_experiment(settings)
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        mlflow.log_params({k: v for k, v in info["params"].items()})
        mlflow.log_params(
            {
                "best_iteration": info["best_iteration"],
                "target_precision": settings.target_precision,
                "data_dir": str(data_dir),
                "labels": prep.label_info.get("labels", "data"),
                "labels_mix": prep.label_info.get("mix", ""),
                **{f"rows_{k}": v for k, v in info["split"].items()},
            }
        )
        mlflow.log_metrics(flat_metrics(report, "test."))
        if champion_report:
            mlflow.log_metrics(flat_metrics(gate_numbers(champion_report), "champion."))
        mlflow.log_dict(feature_schema(), "feature_schema.json")
        mlflow.log_dict(model.thresholds, "thresholds.json")
        mlflow.log_dict(how, "thresholds_how.json")
        mlflow.set_tags({f"threshold.{k.replace(':', '_')}": v["method"] for k, v in how.items()})
        mlflow.log_dict(report, "evaluation.json")
        mlflow.log_dict(decision.as_dict(), "gate_decision.json")
        if prep.label_info:
            mlflow.log_dict(prep.label_info, "labels.json")
        # What `botfilter monitor` compares live traffic with.
        from monitoring.run import training_profile

        mlflow.log_dict(training_profile(model, prep), "reference_profile.json")
        y = prep.y[te]
        ctx_te = prep.ctx.iloc[te]
        kind = (
            ctx_te["bot_kind"].fillna("human").astype(str)
            if "bot_kind" in ctx_te
            else pd.Series(np.where(y, "bot", "human"))
        )
        gains = model.booster.feature_importance("gain")
        for fig in (
            plots.pr_curve(
                y, proba, ctx_te["channel"] + ":" + ctx_te["type"], tmpd / "pr_curve.png"
            ),
            plots.calibration(y, proba, tmpd / "calibration.png"),
            plots.importance(model.feature_names, gains, tmpd / "feature_importance.png"),
            plots.confusion_by_kind(
                kind.reset_index(drop=True), is_bot, tmpd / "confusion_by_bot_kind.png"
            ),
        ):
            mlflow.log_artifact(str(fig), "plots")
        meta = tmpd / METADATA_FILE
        meta.write_text(json.dumps(model.metadata(), indent=2, sort_keys=True))
        example = prep.features.iloc[te[:5]][model.feature_names].astype("float64")
        signature = infer_signature(example, model.predict_proba(example))
        info_model = mlflow.lightgbm.log_model(
            model.booster,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=settings.model_name,
            extra_files=[str(meta)],
            # explicit requirements: inferring them re-imports the world in a subprocess (~30 s)
            pip_requirements=[
                f"lightgbm=={lgb.__version__}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
            ],
            metadata={
                "feature_names": model.feature_names,
                "thresholds": model.thresholds,
                "calibration": list(model.calibration),
            },
        )
        version = str(info_model.registered_model_version)
        mlflow.set_tags(
            {
                "gate.promote": str(decision.promote),
                "gate.reasons": "; ".join(decision.reasons),
                "model_version": f"{settings.model_name}/{version}",
            }
        )
        run_id = run.info.run_id
    model.version = f"{settings.model_name}/{version}"
    if decision.promote:
        client.set_registered_model_alias(settings.model_name, settings.champion_alias, version)
    client.set_model_version_tag(
        settings.model_name, version, "gate", "promoted" if decision.promote else "rejected"
    )
    return TrainResult(
        model, run_id, model.version, report, decision, {"champion_report": champion_report}
    )
