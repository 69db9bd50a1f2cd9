"""The dashboard's daily chart as inline SVG, rendered on the server (no script, no CDN)."""

from __future__ import annotations

from datetime import date
from html import escape
from typing import Any

import pandas as pd

WIDTH, HEIGHT, PAD = 720, 220, 36
HUMAN, BOT, MARK = "#2f6fb0", "#e07b39", "#c0392b"


def daily_counts(frame: pd.DataFrame, channel: str) -> pd.DataFrame:
    """Per day of one channel: human and bot interactions (opens plus clicks)."""
    sub = frame[frame["channel"] == channel] if not frame.empty else frame
    if sub.empty:
        return pd.DataFrame(columns=["date", "human", "bot"])
    total = sub["opens_total_all"].fillna(0) + sub["clicks_total_all"].fillna(0)
    human = sub["opens_total_human"].fillna(0) + sub["clicks_total_human"].fillna(0)
    out = pd.DataFrame(
        {"date": pd.to_datetime(sub["date"]).dt.date, "human": human, "bot": total - human}
    )
    return out.groupby("date", as_index=False).sum().sort_values("date")


def _calendar(days: pd.DataFrame, latest_change: date | None) -> pd.DataFrame:
    """Every calendar day from the first counted day to the last one, or to the latest setting
    change if that came later (a change made today, before today's first interaction, still
    gets its marker); days without interactions count zero, so bars keep a true time axis."""
    first, last = days["date"].iloc[0], days["date"].iloc[-1]
    if latest_change is not None and latest_change > last:
        last = latest_change
    calendar = pd.DataFrame({"date": [d.date() for d in pd.date_range(first, last, freq="D")]})
    return calendar.merge(days, on="date", how="left").fillna({"human": 0, "bot": 0})


def daily_svg(frame: pd.DataFrame, channel: str, changes: list[dict[str, Any]]) -> str:
    """Stacked bars (human below, bot above) per day, with a red marker on each day the
    channel's filter setting changed, so filtered and unfiltered days are not compared unawares."""
    days = daily_counts(frame, channel)
    if days.empty:
        return f'<p class="empty">No {escape(channel)} interactions in the store.</p>'
    changed = [
        (pd.Timestamp(c["changed_at"]).date(), bool(c["to"]))
        for c in changes
        if c["channel"] == channel and c.get("changed_at")
    ]
    days = _calendar(days, max([d for d, _ in changed], default=None))
    n = len(days)
    top = max(float((days["human"] + days["bot"]).max()), 1.0)
    step = (WIDTH - 2 * PAD) / n
    bar = max(step * 0.8, 1.0)
    scale = (HEIGHT - 2 * PAD) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(channel)} human and bot interactions per day">',
        f'<text x="{PAD}" y="{PAD - 14}" font-size="12">{escape(channel)}: max {int(top):,}/day'
        f' <tspan fill="{HUMAN}">■ human</tspan> <tspan fill="{BOT}">■ bot</tspan>'
        f' <tspan fill="{MARK}">| setting changed</tspan></text>',
    ]
    columns = zip(days["date"].tolist(), days["human"].tolist(), days["bot"].tolist(), strict=True)
    for i, (day, human, bot) in enumerate(columns):
        x = PAD + i * step
        h_human, h_bot = human * scale, bot * scale
        base = HEIGHT - PAD
        title = f"{day}: {int(human):,} human, {int(bot):,} bot"
        parts.append(
            f"<g><title>{escape(title)}</title>"
            f'<rect x="{x:.1f}" y="{base - h_human:.1f}" width="{bar:.1f}" height="{h_human:.1f}" fill="{HUMAN}"/>'
            f'<rect x="{x:.1f}" y="{base - h_human - h_bot:.1f}" width="{bar:.1f}" height="{h_bot:.1f}" fill="{BOT}"/></g>'
        )
    first, last = days["date"].iloc[0], days["date"].iloc[-1]
    for day, to in changed:
        if day < first:  # before the chart's first day: no shown day was counted otherwise
            continue
        x = PAD + (day - first).days * step
        state = "on" if to else "off"
        parts.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD - 6}" y2="{HEIGHT - PAD}" '
            f'stroke="{MARK}" stroke-width="2"><title>filter {state} on {day}</title></line>'
        )
    parts.append(
        f'<text x="{PAD}" y="{HEIGHT - 10}" font-size="11">{first}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 10}" font-size="11" text-anchor="end">{last}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
