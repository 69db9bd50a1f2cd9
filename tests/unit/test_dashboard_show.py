"""`botfilter metrics show`'s table: ids shown as written, the newest days first."""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console

from jobs.dashboard import TenantMetrics, fitted, show_table


def _rows(key: str, values: list, delivered: list[int]) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame(
        {
            key: values,
            "channel": ["email"] * n,
            "delivered": delivered,
            "opens_total_all": [4] * n,
            "opens_total_human": [2] * n,
            "open_rate_all": [0.5] * n,
            "open_rate_human": [0.25] * n,
            "clicks_total_all": [2] * n,
            "clicks_total_human": [1] * n,
            "ctr_all": [0.2] * n,
            "ctr_human": [0.1] * n,
            "bot_filter_applied": [True] * n,
            "bot_opens_excluded": [2] * n,
            "bot_clicks_excluded": [1] * n,
        }
    )


def _text(metrics: TenantMetrics, module: str, limit: int = 50) -> str:
    console = Console(record=True, width=300, color_system=None)
    console.print(show_table(metrics, module, limit))
    return console.export_text()


def test_ids_that_look_like_markup_are_shown_as_written() -> None:
    ids = ["[/x]", "[bold red]SALE[/bold red] [link=https://evil.example]click[/link]"]
    metrics = TenantMetrics(
        "t[b]1", {"campaign_metrics": _rows("campaign_id", ids, [10, 9])}, pd.DataFrame(), {}
    )
    text = _text(metrics, "campaigns")
    assert "tenant t[b]1:" in text
    for campaign in ids:
        assert campaign in text


def test_dashboard_shows_the_newest_days_first() -> None:
    days = [pd.Timestamp("2024-03-01") + pd.Timedelta(days=d) for d in range(5)]
    frame = _rows("date", [d.date() for d in days], [10] * 5)
    metrics = TenantMetrics("t1", {"dashboard_daily": frame}, pd.DataFrame(), {})
    text = _text(metrics, "dashboard", limit=2)
    assert "2024-03-05" in text and "2024-03-04" in text
    assert "2024-03-01" not in text and "2024-03-03" not in text
    assert text.index("2024-03-05") < text.index("2024-03-04")


UUID = "3f2b9c1e-8a4d-4c1b-9e57-0d6a1f2b7c44"


def _characters(text: str) -> list[str]:
    return sorted(c for c in text if not c.isspace() and c != "─")


def test_nothing_is_cut_on_a_narrow_terminal_or_in_a_pipe() -> None:
    """The audit: at 80 columns, and whenever piped, every date read "2024-03-…", every UUID
    campaign was cut and the numbers read "100.…"."""
    frame = _rows("campaign_id", [UUID, "c2"], [123456, 99])
    frame["bot_filter_applied"] = [False, True]
    metrics = TenantMetrics("t1", {"campaign_metrics": frame}, pd.DataFrame(), {})
    shown = {}
    for width in (80, 300):
        console = Console(record=True, width=width, color_system=None, force_terminal=True)
        console.print(show_table(metrics, "campaigns"))
        shown[width] = console.export_text()
    # folded, not cut: every character of the wide table is there (the audit: 285→64 read 285→6)
    assert "…" not in shown[80] and len(shown[80].splitlines()) > len(shown[300].splitlines())
    assert _characters(shown[80]) == _characters(shown[300])
    table = show_table(metrics, "campaigns")
    piped = fitted(Console(file=io.StringIO(), width=80), table)
    assert not piped.is_terminal and piped.width > 80
    piped.begin_capture()
    piped.print(table)
    text = piped.end_capture()
    assert UUID in text and "123,456" in text and "off (" in text and "…" not in text


def test_the_report_names_models_not_score_sources() -> None:
    """Partitions stamped with several models, or none (a window without events), name each
    model once; before, an empty window's stamp was the score source ("store")."""
    from jobs.dashboard import _models

    stamps = pd.Series(["botfilter/3", "", "botfilter/2,botfilter/3", None])
    assert _models(stamps) == "botfilter/2, botfilter/3"
    assert _models(pd.Series(["", ""])) == "–"
