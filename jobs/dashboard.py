"""Reading the metrics back: ``botfilter metrics show`` (a rich table, with and without bots side
by side) and ``botfilter report`` (one self-contained HTML page of charts).

Both read the stored partitions of a tenant and roll them up with :func:`jobs.metrics.rollup`,
so they show what the dashboards show: the last 30 days as last recomputed, older days as they
were computed then.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.errors import BotfilterError
from core.output import plain_console, write_text_whole
from core.paths import check_out_file
from jobs.exclusions import tenant_setting
from jobs.metrics import MODULES, NO_DOMAIN, rollup
from jobs.store import Store
from labelling.estimates import html_section, load_estimates

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SHOW_MODULES = {
    "campaigns": "campaign_metrics",
    "automations": "automation_metrics",
    "segments": "segment_metrics",
    "dashboard": "dashboard_daily",
}
HUMAN = "#2b6cb0"
BOT = "#dd6b20"
LIGHT = "#cbd5e0"


@dataclass
class TenantMetrics:
    """A tenant's stored metrics, rolled up, from one read snapshot."""

    tenant: str
    tables: dict[str, pd.DataFrame]
    partitions: pd.DataFrame  # metric_partitions rows
    settings: dict[str, bool]

    @property
    def empty(self) -> bool:
        return self.partitions.empty or int(self.partitions["messages"].sum()) == 0


def load_tenant(
    store: Store,
    tenant: str,
    since: date | None = None,
    until: date | None = None,
    only: str | None = None,
) -> TenantMetrics:
    """Every module table of a tenant (with both sides of the comparison) from the store, or
    ``only`` that one (what ``metrics show`` prints: reading and rolling up all of them was a
    third of its time)."""
    partitions = store.partition_summary(tenant)
    if partitions.empty:  # before reading any table: a tenant without metrics is told at once
        raise BotfilterError(
            f"no metrics stored for tenant {tenant!r}: run `botfilter recompute` first"
        )
    modules = MODULES if only is None else {only: MODULES[only]}
    with store.read() as conn:
        tables = {
            name: rollup(
                store.read_partitions(name, tenant, since, until, conn), module, comparison=True
            )
            for name, module in modules.items()
        }
    return TenantMetrics(tenant, tables, partitions, tenant_setting(store, tenant))


def module_table(module: str) -> str:
    """The stored table ``metrics show --module`` names; a clear error for any other name."""
    if module not in SHOW_MODULES:
        raise BotfilterError(f"unknown module {module!r}: use {', '.join(SHOW_MODULES)}")
    return SHOW_MODULES[module]


# --- metrics show -----------------------------------------------------------------------------


def _num(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def _pct(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{100 * float(value):.1f}%"


def _pair(left: str, right: str) -> str:
    return "—" if left == "—" and right == "—" else f"{left} → {right}"


def interactions(frame: pd.DataFrame, side: str) -> pd.Series:
    """Opens plus clicks on one side (``all`` or ``human``); SMS has clicks only."""
    opens = frame[f"opens_total_{side}"].astype("Float64").fillna(0)
    return opens + frame[f"clicks_total_{side}"].astype("Float64")


def bot_share(frame: pd.DataFrame) -> pd.Series:
    """Share of interactions that are bots (what the filter removes when on)."""
    total = interactions(frame, "all")
    return ((total - interactions(frame, "human")) / total.where(total > 0)).astype(float)


def excluded_share(frame: pd.DataFrame) -> pd.Series:
    """Share of interactions the filter actually left out."""
    total = interactions(frame, "all")
    excluded = frame["bot_opens_excluded"].astype("Float64").fillna(0)
    excluded = excluded + frame["bot_clicks_excluded"].astype("Float64")
    return (excluded / total.where(total > 0)).astype(float)


def _arrow(left: str, right: str, unit: str = "") -> str:
    """``with → without`` in as few characters as possible."""
    if left == "—" and right == "—":
        return "—"
    return f"{left.rstrip(unit)}→{right}"


def show_table(metrics: TenantMetrics, module: str, limit: int = 50) -> Table:
    """A rich table of one module: each metric with bots → without bots, and the share excluded."""
    name = module_table(module)
    frame = metrics.tables[name]
    key = MODULES[name].keys[0]
    if key == "date":  # the newest days first: a limit drops the oldest
        frame = frame.sort_values([key, "channel"], ascending=[False, True], kind="stable")
    else:
        frame = frame.sort_values(["delivered", key], ascending=[False, True], kind="stable")
    frame = frame.head(limit)
    # Ids are data, shown as written (Text, on any console): never read as rich markup ("[/x]"
    # failed the command, "[link=...]" made a link of a campaign id).
    table = Table(
        title=Text(
            f"{module} of tenant {metrics.tenant}: with bots → without bots", style="table.title"
        ),
        title_justify="left",
        caption="excl.: share of opens and clicks the filter leaves out "
        "(filter off: the share of bots it would leave out)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),  # fits an 80-column terminal
    )
    labels = [Text(str(v)) for v in frame[key]]
    # Folded, never cut: on a narrow terminal rich cut every cell to "2024-03-…" and "100.…"
    table.add_column(key.replace("_", " "), overflow="fold")
    table.add_column("channel", overflow="fold")
    for header in ("delivered", "opens", "open rate", "clicks", "CTR", "excl."):
        table.add_column(header, justify="right", overflow="fold")
    shares, excluded = bot_share(frame), excluded_share(frame)
    for i, row in enumerate(frame.itertuples(index=False)):
        on = bool(row.bot_filter_applied)
        share = _pct(excluded.iloc[i]) if on else f"off ({_pct(shares.iloc[i])})"
        table.add_row(
            labels[i],
            Text(str(row.channel)),
            _num(row.delivered),
            _arrow(_num(row.opens_total_all), _num(row.opens_total_human)),
            _arrow(_pct(row.open_rate_all), _pct(row.open_rate_human), "%"),
            _arrow(_num(row.clicks_total_all), _num(row.clicks_total_human)),
            _arrow(_pct(row.ctr_all), _pct(row.ctr_human), "%"),
            share,
        )
    return table


def fitted(console: Console, table: Table) -> Console:
    """``console``, or where it writes to a pipe or a file rather than a terminal, one as wide
    as ``table``: a pipe has no width to fit, and rich's 80 columns folded every row. That one
    reads no markup, as the commands' consoles (:func:`core.output.plain_console`)."""
    if console.is_terminal:
        return console
    wide = console.measure(table, options=console.options.update(max_width=100_000))
    return plain_console(width=max(console.width, wide.maximum))


# --- the HTML report --------------------------------------------------------------------------


def _pyplot() -> ModuleType:
    """matplotlib's pyplot, drawing off-screen. Imported on first use: 0.75 s of import that
    ``botfilter metrics show`` (and every other user of this module) never needs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(chart: Callable[..., Figure], *args: Any) -> str:
    """``chart(*args)`` as an inline <img> (base64 PNG). Text is never read as mathtext: a
    campaign id or domain holding ``$`` is shown as written (and cannot fail the report)."""
    plt = _pyplot()

    buf = io.BytesIO()
    # tick labels are made when the figure is drawn: the whole life of the figure is inside
    with plt.rc_context({"text.parse_math": False}):
        fig = chart(*args)
        try:
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="chart" src="data:image/png;base64,{data}">'


def daily_chart(daily: pd.DataFrame) -> Figure:
    """Stacked daily bars, human against bot: email opens, email clicks, SMS clicks."""
    plt = _pyplot()

    panels = [("email", "opens_total", "Email opens"), ("email", "clicks_total", "Email clicks")]
    if (daily["channel"] == "sms").any():
        panels.append(("sms", "clicks_total", "SMS clicks"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (channel, measure, title) in zip(axes, panels, strict=True):
        rows = daily.loc[daily["channel"] == channel].sort_values("date")
        days = pd.to_datetime(rows["date"].astype(str))
        human = rows[f"{measure}_human"].astype("Float64").fillna(0).to_numpy(float)
        bots = rows[f"{measure}_all"].astype("Float64").fillna(0).to_numpy(float) - human
        ax.bar(days, human, color=HUMAN, label="human", width=0.8)
        ax.bar(days, bots, bottom=human, color=BOT, label="bot", width=0.8)
        share = bots.sum() / max(bots.sum() + human.sum(), 1)
        ax.set_title(f"{title} per day — {100 * share:.0f}% bot", loc="left", fontsize=11)
        ax.set_ylim(bottom=0)
        if bots.sum() + human.sum() == 0:
            ax.set_yticks([])
            ax.text(0.5, 0.5, "none in this period", transform=ax.transAxes, ha="center")
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", frameon=False, ncol=2)
    axes[-1].tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def ctr_changes(campaigns: pd.DataFrame, top: int = 10, min_delivered: int = 10) -> pd.DataFrame:
    """Campaigns whose CTR moves most when bots are left out (tiny sends only if nothing else)."""
    frame = campaigns.loc[campaigns["delivered"] >= min_delivered]
    if frame.empty:
        frame = campaigns.loc[campaigns["delivered"] > 0]
    frame = frame.copy()
    frame["ctr_change"] = frame["ctr_human"] - frame["ctr_all"]
    frame = frame.dropna(subset=["ctr_change"])
    order = frame["ctr_change"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].head(top)


def ctr_chart(changes: pd.DataFrame) -> Figure:
    """Dumbbells: each campaign's CTR with bots and without."""
    plt = _pyplot()

    rows = changes.iloc[::-1]
    labels = [f"{c} ({ch})" for c, ch in zip(rows["campaign_id"], rows["channel"], strict=True)]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.2))
    ax.hlines(y, rows["ctr_human"] * 100, rows["ctr_all"] * 100, color=LIGHT, linewidth=3)
    ax.scatter(rows["ctr_all"] * 100, y, color=BOT, label="with bots", zorder=3)
    ax.scatter(rows["ctr_human"] * 100, y, color=HUMAN, label="without bots", zorder=3)
    ax.set_yticks(y, labels)
    ax.set_xlabel("click-through rate (%)")
    ax.set_title("Campaigns whose CTR changed most", loc="left", fontsize=11)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    fig.tight_layout()
    return fig


def breakdown(bots: pd.DataFrame, by: str, top: int = 15) -> pd.DataFrame:
    """Bot interactions by ``by`` (bot_kind or recipient_domain): excluded and not."""
    if bots.empty:
        return pd.DataFrame(columns=[by, "excluded", "kept", "total"])
    frame = bots.assign(
        total=bots["bot_opens"].astype("Float64").fillna(0) + bots["bot_clicks"],
        excluded=bots["bot_opens_excluded"].astype("Float64").fillna(0)
        + bots["bot_clicks_excluded"],
    )
    grouped = frame.groupby(by, sort=True)[["total", "excluded"]].sum().astype(int)
    grouped["kept"] = grouped["total"] - grouped["excluded"]
    grouped = grouped.sort_values("total", ascending=False, kind="stable").head(top)
    return grouped.reset_index()[[by, "excluded", "kept", "total"]]


def breakdown_chart(kinds: pd.DataFrame, domains: pd.DataFrame) -> Figure:
    """Horizontal bars: bot interactions by kind and by recipient domain."""
    plt = _pyplot()

    height = max(len(kinds), len(domains), 3) * 0.38 + 1.4
    fig, axes = plt.subplots(1, 2, figsize=(12, height))
    for ax, frame, by, title in (
        (axes[0], kinds, "bot_kind", "by bot kind"),
        (axes[1], domains, "recipient_domain", "by recipient domain"),
    ):
        rows = frame.iloc[::-1]
        y = np.arange(len(rows))
        ax.barh(y, rows["excluded"], color=BOT, label="excluded")
        ax.barh(y, rows["kept"], left=rows["excluded"], color=LIGHT, label="flagged, not excluded")
        labels = rows[by].astype(str).replace({NO_DOMAIN: "(no domain: SMS)"})
        ax.set_yticks(y, labels)
        ax.set_title(f"Bot interactions {title}", loc="left", fontsize=11)
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("opens + clicks")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
    fig.legend(handles, labels, loc="upper center", ncol=2, frameon=False)
    return fig


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, classes="data", na_rep="—", escape=True)


def _summary_rows(totals: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in totals.itertuples(index=False):
        rows.append(
            {
                "channel": row.channel,
                "delivered": _num(row.delivered),
                "opens": _pair(_num(row.opens_total_all), _num(row.opens_total_human)),
                "open rate": _pair(_pct(row.open_rate_all), _pct(row.open_rate_human)),
                "clicks": _pair(_num(row.clicks_total_all), _num(row.clicks_total_human)),
                "CTR": _pair(_pct(row.ctr_all), _pct(row.ctr_human)),
                "filter": "on" if row.bot_filter_applied else "off",
            }
        )
    return pd.DataFrame(rows)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1a202c;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem}
.meta{color:#4a5568}img{max-width:100%}
table.data{border-collapse:collapse;font-size:.9rem}
table.data th,table.data td{padding:.3rem .7rem;border-bottom:1px solid #e2e8f0;text-align:right}
table.data th:first-child,table.data td:first-child{text-align:left}
"""


def _models(stamps: pd.Series) -> str:
    """The models named by partitions' stamps (each a comma-joined list; empty where no event
    was scored), or a dash."""
    names = {v for stamp in stamps.dropna() for v in str(stamp).split(",") if v}
    return ", ".join(sorted(names)) or "–"


def render_report(metrics: TenantMetrics, extra_html: str = "") -> str:
    """The report page as one HTML string (charts embedded as base64 PNGs).

    ``extra_html`` is appended as is (sections built elsewhere, already escaped).
    """
    if metrics.empty:
        raise BotfilterError(f"tenant {metrics.tenant!r} has no messages in its stored metrics")
    parts = metrics.partitions
    first, last = parts["send_date"].min(), parts["send_date"].max()
    setting = ", ".join(f"{c}: {'on' if v else 'off'}" for c, v in metrics.settings.items())
    totals = metrics.tables["channel_totals"]
    changes = ctr_changes(metrics.tables["campaign_metrics"])
    bots = metrics.tables["bot_interactions"]
    kinds, domains = breakdown(bots, "bot_kind"), breakdown(bots, "recipient_domain")
    esc = html.escape
    body = [
        f"<h1>Bot interactions — tenant {esc(metrics.tenant)}</h1>",
        f'<p class="meta">Send dates {first} to {last} · exclude bots: {esc(setting)} · '
        f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · models "
        f"{esc(_models(parts['model_version']))}</p>",
        "<h2>Totals: with bots → without bots</h2>",
        _html_table(_summary_rows(totals)),
        "<h2>Daily opens and clicks: human against bot</h2>",
        _png(daily_chart, metrics.tables["dashboard_daily"]),
        "<h2>Campaigns whose CTR changed most</h2>",
    ]
    if changes.empty:
        body.append("<p>No campaign with enough deliveries to compare.</p>")
    else:
        body.append(_png(ctr_chart, changes))
        shown = changes[["campaign_id", "channel", "delivered", "ctr_all", "ctr_human"]].copy()
        shown["ctr_all"] = shown["ctr_all"].map(_pct)
        shown["ctr_human"] = shown["ctr_human"].map(_pct)
        shown.columns = ["campaign", "channel", "delivered", "CTR with bots", "CTR without bots"]
        body.append(_html_table(shown))
    body.append("<h2>Excluded interactions by bot kind and recipient domain</h2>")
    if kinds.empty:
        body.append("<p>No bot interactions.</p>")
    else:
        body.append(
            "<p>Bot kind is the model's (the scores' bot_kind); for scores from a model without "
            "a kind head, the events' labels where present, otherwise the strongest reason. "
            "Grey: flagged as bot on a channel whose filter is off.</p>"
        )
        body.append(_png(breakdown_chart, kinds, domains))
        body.append('<div style="display:flex;gap:3rem;flex-wrap:wrap">')
        for frame, label in ((kinds, "bot kind"), (domains, "recipient domain")):
            shown = frame.rename(columns={frame.columns[0]: label, "kept": "not excluded"})
            body.append(f"<div>{_html_table(shown)}</div>")
        body.append("</div>")
    body.append(extra_html)
    page = "\n".join(body)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>botfilter report — {esc(metrics.tenant)}</title><style>{STYLE}</style>"
        f"</head><body>{page}</body></html>"
    )


def write_report(store: Store, tenant: str, out: Path, home: Path | None = None) -> Path:
    """Write the tenant's report as one self-contained HTML file, whole or not at all.

    With the data ``home``, the tenant's saved scanner-recall estimate gets a section too.
    """
    out = check_out_file(out)  # before any work
    extra = ""
    if home is not None:
        extra = html_section(load_estimates(home, tenant))
    page = render_report(load_tenant(store, tenant), extra)
    return write_text_whole(out, page)  # the previous report stays whole if writing fails
