"""Running the monitor: the champion's reference profile, scoring a data directory, the JSON
and HTML outputs, and the gauges the API exposes."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contract.parts import TenantParts, merge_reports
from contract.validate import validate_raw
from core.errors import BotfilterError
from core.output import write_text_whole
from core.settings import Settings
from features.pipeline import Enrichers, build_features, event_context
from monitoring.drift import LiveCounts, Thresholds, count_live, reference_profile, report
from scoring.registry import configure_mlflow, load_model

PROFILE = "reference_profile.json"
LATEST = Path("reports") / "monitor" / "latest.json"


def training_profile(model, prep) -> dict[str, Any]:  # noqa: ANN001
    """The reference profile of a training run's data, scored by the model just trained."""
    proba = model.predict_proba(prep.features)
    ctx = prep.ctx
    is_bot = model.flags(proba, ctx, prep.features)
    return reference_profile(prep.features, proba, is_bot, ctx, Enrichers.load())


def load_reference(settings, model_version: str) -> dict[str, Any]:  # noqa: ANN001
    """The reference profile logged by the run that produced ``name/version`` (or the run a
    ``runs:/RUN_ID/PATH`` label names)."""
    configure_mlflow(settings)  # resolving the model may not have opened the registry
    try:
        run_id: str | None
        if model_version.startswith("runs:/"):
            run_id = model_version[len("runs:/") :].split("/", 1)[0]
        elif "/" in model_version:
            name, version = model_version.split("/", 1)
            run_id = MlflowClient().get_model_version(name, version).run_id
        else:  # a model from a file or directory: no run logged its training profile
            raise OSError(f"{model_version} is not a registered version or a run")
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{PROFILE}")
    except (MlflowException, OSError) as exc:
        raise BotfilterError(
            f"model {model_version} has no {PROFILE}: retrain it with this version "
            "(`botfilter train`) to monitor against it"
        ) from exc


# Events per part of a monitored window (whole tenants): memory follows the largest part.
MONITOR_PART_EVENTS = 250_000


def run_monitor(
    settings,  # noqa: ANN001
    data: Path,
    model_uri: str | None = None,
    th: Thresholds = Thresholds(),
    part_events: int = MONITOR_PART_EVENTS,
) -> dict[str, Any]:
    """Score ``data`` with the model and compare it with the model's training data.

    Part by part (whole tenants, about ``part_events`` events each): features never look
    across tenants and the report is made of counts that add up (:class:`LiveCounts`), so the
    report is the whole directory's while memory follows the largest part (the worker's daily
    monitor of a 2.65M-event window peaked at about 8 GiB when it read the directory whole).
    """
    model = load_model(settings, model_uri)
    reference = load_reference(settings, model.version)
    enrichers = Enrichers.load()
    parts = TenantParts(data, part_events)
    counts: LiveCounts | None = None
    reports = []
    for i in range(len(parts)):
        validated = validate_raw(parts.raw(i))
        reports.append(validated.report)
        ctx = event_context(validated.messages, validated.events).reset_index(drop=True)
        del validated
        if ctx.empty:
            continue
        feats = build_features(ctx, enrichers)
        proba = model.predict_proba(feats)
        is_bot = model.flags(proba, ctx, feats)
        part = count_live(ctx, feats, proba, np.asarray(is_bot), reference, enrichers, th)
        counts = part if counts is None else counts + part
    if counts is None:
        raise BotfilterError(f"{data}: no clean events to monitor")
    out = report(counts, reference, th)
    # what was quarantined and why, by table (PRODUCT.md: never silently dropped)
    checked = parts.settle(merge_reports(reports))
    out["quarantined"] = {
        n: dict(t.quarantined) for n, t in checked.tables.items() if t.quarantined
    }
    out["model_version"] = model.version
    out["data"] = str(data)
    out["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


def save_latest(home: Path, report: dict[str, Any]) -> Path:
    """Keep the latest report under the data home, where the API's gauges read it (written
    whole: a scrape never reads half a file)."""
    return write_text_whole(home / LATEST, json.dumps(report, indent=2, default=float))


def save_if_champion(
    settings: Settings, report: dict[str, Any], model_uri: str | None, champion: str | None
) -> Path | None:
    """:func:`save_latest` when ``report`` is of the champion (``model_uri`` None, or naming
    the version ``champion``): the API's drift gauges and the console read it. Another model's
    report is not kept there (None); a rejected model's drift replaced the champion's."""
    if model_uri is not None and report["model_version"] != champion:
        return None
    return save_latest(settings.ensure_home(), report)


def html_section(report: dict[str, Any]) -> str:
    """The drift report as an HTML section (self-contained, escaped)."""
    esc = html.escape
    alerts = report["alerts"]
    parts = [
        "<h2>Drift against the champion's training data</h2>",
        f"<p>Model {esc(report['model_version'])}, {report['events']:,} events, "
        f"{esc(report['at'])}. Bot share {report['bot_share']:.1%} "
        f"(training {report['reference_bot_share']:.1%}); score PSI {report['score_psi']:.3f}.</p>",
    ]
    if not report.get("psi_judged", True):
        least = report["thresholds"]["psi_min_events"]
        parts.append(f"<p>PSI not judged: fewer than {least:,} events.</p>")
    if alerts:
        parts.append("<ul>" + "".join(f"<li>{esc(a)}</li>" for a in alerts) + "</ul>")
    else:
        parts.append("<p>No alert.</p>")
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{v:.3f}</td></tr>"
        for k, v in list(report["feature_psi"].items())[:15]
    )
    parts.append(f'<table class="data"><tr><th>feature</th><th>PSI</th></tr>{rows}</table>')
    if report["candidate_scanners"]:
        rows = "".join(
            f"<tr><td>AS{c['asn']} {esc(c['network'])}</td><td>{c['unflagged_events']:,}</td>"
            f"<td>{c.get('model_flagged_share', 0.0):.0%}</td>"
            f"<td>{'yes' if c.get('new_since_training') else 'no'}</td>"
            f"<td>{c['within_a_minute_share']:.0%}</td><td>{c['recipients_fanned_out']:,}</td></tr>"
            for c in report["candidate_scanners"]
        )
        parts.append(
            '<h3>Candidate new scanners</h3><table class="data"><tr><th>network</th>'
            "<th>unflagged events</th><th>flagged by the model</th><th>new since training</th>"
            "<th>within a minute</th><th>recipients</th></tr>"
            f"{rows}</table>"
        )
    return "\n".join(parts)


def gauges(home: Path) -> str:
    """Prometheus gauge lines from the latest monitor report ('' when there is none)."""
    path = home / LATEST
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    psi = max(report.get("feature_psi", {}).values(), default=0.0)
    values = {
        "botfilter_drift_alerts": (
            len(report["alerts"]),
            "Alerts of the latest drift monitor run.",
        ),
        "botfilter_drift_feature_psi_max": (psi, "Largest feature PSI against training data."),
        "botfilter_drift_score_psi": (report["score_psi"], "Score distribution PSI."),
        "botfilter_drift_candidate_scanners": (
            len(report["candidate_scanners"]),
            "Networks fanning out within seconds, unflagged or new since training "
            "(candidate new scanners).",
        ),
        "botfilter_drift_report_timestamp_seconds": (
            datetime.fromisoformat(report["at"]).timestamp(),
            "When the latest drift monitor ran.",
        ),
    }
    lines = []
    for name, (value, help_text) in values.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {float(value)!r}"]
    return "\n".join(lines) + "\n"
