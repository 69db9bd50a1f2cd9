"""Accuracy estimates without labels: the share of honeypot-confirmed scanner events that the
model flags is a recall estimate for scanners, per tenant and channel.

A honeypot hit is a bot event (no person can see the link), and so are the same address's other
events on that message within seconds (``labelling.functions.honeypot_same_address``). Where a
tenant's messages carry honeypot links, those other events are a labelled sample of its scanner
traffic. The hits themselves are left out of the sample: ``is_hidden_link`` is a model input, so
the model flags them on sight and they would only flatter the estimate; the address's other
events look to the model like any scan. The estimate covers scanners that follow links, not every kind of bot, and is shown
with a Wilson interval and the count it rests on; below ``MIN_CONFIRMED`` it says so instead.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from collections.abc import Hashable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from core.output import write_text_whole
from labelling.functions import honeypot_same_address

if TYPE_CHECKING:
    from rich.table import Table

MIN_CONFIRMED = 30  # fewer confirmed events than this: too few to tell
Z = 1.96  # 95% interval
TOO_FEW = "too few to tell"
NO_HONEYPOT = "no honeypot hits"
_NAME_MAX = 150  # characters of a tenant's file name before it is cut and hashed
COLUMNS = ("tenant_id", "channel", "confirmed", "flagged", "recall", "ci_low", "ci_high", "note")


def wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (nan, nan when n is 0)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def confirmed_scanners(ctx: pd.DataFrame, feats: pd.DataFrame) -> np.ndarray:
    """Events a honeypot confirms as bots: its address's other events seconds around the hit."""
    return honeypot_same_address(ctx, feats)


def honeypot_recall(
    ctx: pd.DataFrame,
    feats: pd.DataFrame,
    is_bot: np.ndarray,
    min_confirmed: int = MIN_CONFIRMED,
) -> pd.DataFrame:
    """One row per (tenant, channel): confirmed events, flagged ones, recall and its interval."""
    confirmed = confirmed_scanners(ctx, feats)
    frame = pd.DataFrame(
        {
            "tenant_id": ctx["tenant_id"].to_numpy(),
            "channel": ctx["channel"].to_numpy(),
            "confirmed": confirmed,
            "flagged": confirmed & np.asarray(is_bot, dtype=bool),
            "hits": ctx["is_hidden_link"].fillna(False).to_numpy(dtype=bool),
        }
    )
    counts = frame.groupby(["tenant_id", "channel"], sort=True)[
        ["confirmed", "flagged", "hits"]
    ].sum()
    rows = []
    for (tenant, channel), confirmed_n, flagged_n, hits in zip(
        counts.index, counts["confirmed"], counts["flagged"], counts["hits"], strict=True
    ):
        n, k = int(confirmed_n), int(flagged_n)
        low, high = wilson(k, n)
        # hits that confirmed nothing yet are "too few", not "no hits"
        note = NO_HONEYPOT if n == 0 and not hits else TOO_FEW if n < min_confirmed else ""
        rows.append((tenant, channel, n, k, k / n if n else math.nan, low, high, note))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _tenant_file(home: Path, tenant: str) -> Path:
    """One file per tenant: a report for one tenant never reads another's numbers. A long id
    is cut and completed by its SHA-256 (file names stop at 255 bytes); such names are longer
    than any uncut one, so the two kinds never meet."""
    name = quote(str(tenant), safe="")
    if len(name) > _NAME_MAX:
        name = f"{name[:100]}~{hashlib.sha256(str(tenant).encode()).hexdigest()}"
    return home / "reports" / "accuracy" / f"{name}.json"


def save_estimates(home: Path, table: pd.DataFrame, model_version: str) -> list[Path]:
    """Write each tenant's rows to its own JSON file under the data home, each whole or not at
    all (a report or ``metrics show`` reading it meanwhile sees the previous one)."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    paths = []
    for tenant, rows in table.groupby("tenant_id", sort=True):
        records = json.loads(rows.to_json(orient="records"))
        doc = {"tenant_id": tenant, "model_version": model_version, "at": at, "rows": records}
        paths.append(write_text_whole(_tenant_file(home, str(tenant)), json.dumps(doc, indent=2)))
    return paths


def load_estimates(home: Path, tenant: str) -> dict[str, Any] | None:
    """The tenant's latest saved estimates, or None."""
    path = _tenant_file(home, tenant)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):  # none saved yet, or unreadable
        return None
    return doc if isinstance(doc, dict) and doc.get("tenant_id") == tenant else None


def _fmt(row: Mapping[Hashable, Any]) -> tuple[str, str]:
    """(recall, interval) cells: the words instead of numbers where the count is too small."""
    if row["note"]:
        return row["note"], "—"
    return f"{row['recall']:.1%}", f"{row['ci_low']:.1%} – {row['ci_high']:.1%}"


def rich_table(rows: Sequence[Mapping[Hashable, Any]], title: str) -> Table:
    """The estimates as a rich table."""
    # Imported on print only: the HTML report (jobs.dashboard) imports this module and never
    # prints, so rich.table (0.08 s) stays out of it.
    from rich.table import Table

    table = Table(title=title)
    for col in ("tenant", "channel", "confirmed", "flagged", "recall", "95% interval"):
        table.add_column(col, justify="left" if col in ("tenant", "channel") else "right")
    for r in rows:
        recall, interval = _fmt(r)
        table.add_row(
            str(r["tenant_id"]),
            r["channel"],
            f"{r['confirmed']:,}",
            f"{r['flagged']:,}",
            recall,
            interval,
        )
    return table


EXPLAIN = (
    "Scanner recall estimated without labels: of the events a honeypot link confirms as bots "
    "(the same address's other events on the message within seconds of its hidden-link hit), "
    "the share the model flags, with a 95% Wilson interval. It covers link-following scanners only; "
    f"below {MIN_CONFIRMED} confirmed events it is too few to tell."
)


def html_section(doc: dict[str, Any] | None) -> str:
    """An HTML section for the tenant report."""
    head = "<h2>Estimated scanner recall (honeypot-confirmed events)</h2>"
    if doc is None:
        return head + "<p>No estimate yet: run <code>botfilter evaluate --unlabelled</code>.</p>"
    cells = []
    for r in doc["rows"]:
        recall, interval = _fmt(r)
        cells.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    r["channel"],
                    f"{r['confirmed']:,}",
                    f"{r['flagged']:,}",
                    recall,
                    interval,
                )
            )
            + "</tr>"
        )
    return (
        head
        + f"<p>{html.escape(EXPLAIN)} Model {html.escape(doc['model_version'])}, {html.escape(doc['at'])}.</p>"
        + '<table class="data"><tr><th>channel</th><th>confirmed</th><th>flagged</th>'
        + "<th>recall</th><th>95% interval</th></tr>"
        + "".join(cells)
        + "</table>"
    )


def evaluate_unlabelled(
    settings,  # noqa: ANN001
    data: Path,
    model_uri: str | None,
    console,  # noqa: ANN001
    out: Path | None = None,
) -> pd.DataFrame:
    """Score a data directory with the model, estimate recall per tenant and channel, save it
    per tenant when the model is the champion (and every tenant's rows to ``out``, when
    given)."""
    # Here, not at the top: `metrics show` and `report` import this module for the saved
    # estimates, and MLflow/LightGBM (scoring.registry) plus the feature pipeline cost them
    # about 1.7 s of start-up (python -X importtime).
    from contract import load
    from features.pipeline import Enrichers, build_features, event_context
    from scoring.registry import champion_version, load_model

    bot_model = load_model(settings, model_uri)
    validated = load(data)
    validated.report.print(console)  # the events left out of the estimate, and why
    ctx = event_context(validated.messages, validated.events).reset_index(drop=True)
    feats = build_features(ctx, Enrichers.load())
    proba = bot_model.predict_proba(feats)
    is_bot = bot_model.flags(proba, ctx, feats)
    table = honeypot_recall(ctx, feats, is_bot)
    console.print(
        rich_table(table.to_dict("records"), f"scanner recall without labels, {bot_model.version}")
    )
    console.print(EXPLAIN)
    # The saved estimates are the tenants': their report and `metrics show` present them as the
    # filter's recall, so only the champion's are saved (a rejected model's replaced them).
    if model_uri is None or champion_version(settings) == bot_model.version:
        paths = save_estimates(settings.ensure_home(), table, bot_model.version)
        console.print(f"saved per tenant under {paths[0].parent if paths else settings.home}")
    else:
        console.print("not saved per tenant: --model names a model other than the champion (--out)")
    if out is not None:
        records = json.loads(table.to_json(orient="records"))
        doc = {"model_version": bot_model.version, "rows": records}
        write_text_whole(out, json.dumps(doc, indent=2))
        console.print(f"report saved to {out}")
    return table
