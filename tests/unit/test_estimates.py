"""Scanner recall estimated from honeypot-confirmed events: interval, counts, per-tenant files."""

from __future__ import annotations

import errno
import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from core.settings import Settings
from labelling.estimates import (
    NO_HONEYPOT,
    TOO_FEW,
    evaluate_unlabelled,
    honeypot_recall,
    html_section,
    load_estimates,
    save_estimates,
    wilson,
)


def test_wilson_matches_the_textbook_values() -> None:
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = wilson(0, 5)
    assert low == 0.0 and round(high, 4) == 0.4345
    assert all(math.isnan(x) for x in wilson(0, 0))


def _scans(tenant_rows: dict[str, int]) -> list[dict]:
    """Per tenant, that many messages each with a honeypot hit and one other event 2 s later."""
    rows = []
    for tenant, n in tenant_rows.items():
        for i in range(n):
            m, ip = f"{tenant}-m{i}", f"9.9.{i // 250}.{i % 250}"
            rows.append({"tenant": tenant, "message_id": m, "ip": ip, "is_hidden_link": True})
            rows.append({"tenant": tenant, "message_id": m, "ip": ip, "t": 2.0})
    return rows


def test_recall_counts_the_confirmed_events_and_says_when_too_few(event_frames) -> None:
    rows = _scans({"big": 40, "small": 5})
    rows.append({"tenant": "quiet", "message_id": "q"})  # no honeypot at all
    ctx, feats = event_frames(rows)
    ctx["tenant_id"] = [r["tenant"] for r in rows]
    ctx["channel"] = "email"
    # The model flags every hit, and 30 of big's 40 other events, and none of small's.
    is_bot = ctx["is_hidden_link"].to_numpy().copy()
    big_other = np.flatnonzero((ctx["tenant_id"] == "big").to_numpy() & ~is_bot)
    is_bot[big_other[:30]] = True
    table = honeypot_recall(ctx, feats, is_bot).set_index("tenant_id")
    # The hits themselves are no evidence (the model sees is_hidden_link): only the 40 others.
    assert table.loc["big", ["confirmed", "flagged"]].tolist() == [40, 30]
    assert table.loc["big", "recall"] == pytest.approx(0.75)
    low, high = wilson(30, 40)
    assert table.loc["big", "ci_low"] == pytest.approx(low)
    assert table.loc["big", "ci_high"] == pytest.approx(high)
    assert table.loc["big", "note"] == ""
    assert table.loc["small", "confirmed"] == 5 and table.loc["small", "note"] == TOO_FEW
    assert table.loc["quiet", "confirmed"] == 0 and table.loc["quiet", "note"] == NO_HONEYPOT


def test_hits_that_confirm_nothing_are_too_few_not_no_hits(event_frames) -> None:
    """A tenant with honeypot hits but no other event of their addresses was told it had no
    honeypot hits."""
    rows = [
        {"tenant": "lone", "message_id": f"m{i}", "ip": f"9.9.9.{i}", "is_hidden_link": True}
        for i in range(3)
    ]
    ctx, feats = event_frames(rows)
    ctx["tenant_id"] = "lone"
    ctx["channel"] = "email"
    table = honeypot_recall(ctx, feats, np.ones(len(ctx), dtype=bool)).set_index("tenant_id")
    assert table.loc["lone", "confirmed"] == 0 and table.loc["lone", "note"] == TOO_FEW


def test_each_tenant_reads_only_its_own_saved_estimate(event_frames, tmp_path) -> None:
    rows = _scans({"a/1": 35, "b": 35})
    ctx, feats = event_frames(rows)
    ctx["tenant_id"] = [r["tenant"] for r in rows]
    ctx["channel"] = "email"
    table = honeypot_recall(ctx, feats, np.ones(len(ctx), dtype=bool))
    paths = save_estimates(tmp_path, table, "botfilter/3")
    assert len(paths) == 2 and all(p.parent == paths[0].parent for p in paths)
    a = load_estimates(tmp_path, "a/1")
    assert a["model_version"] == "botfilter/3"
    assert [r["tenant_id"] for r in a["rows"]] == ["a/1"]
    assert load_estimates(tmp_path, "nobody") is None
    page = html_section(a)
    assert "100.0%" in page and "35" in page
    assert "evaluate --unlabelled" in html_section(None)


def test_a_tenant_with_a_long_id_saves_and_reads_its_estimates(event_frames, tmp_path) -> None:
    """File names stop at 255 bytes: a 300-character id failed evaluate --unlabelled, and
    every later `report` and `metrics show` of any such tenant, with ENAMETOOLONG."""
    long_a, long_b = "x" * 300, "x" * 299 + "y"  # alike where the file name is cut
    rows = _scans({long_a: 35, long_b: 35})
    ctx, feats = event_frames(rows)
    ctx["tenant_id"] = [r["tenant"] for r in rows]
    ctx["channel"] = "email"
    table = honeypot_recall(ctx, feats, np.ones(len(ctx), dtype=bool))
    paths = save_estimates(tmp_path, table, "botfilter/3")
    assert len({p.name for p in paths}) == 2
    for tenant in (long_a, long_b):
        got = load_estimates(tmp_path, tenant)
        assert got is not None and [r["tenant_id"] for r in got["rows"]] == [tenant]
    assert load_estimates(tmp_path, "z" * 400) is None


# --- evaluate --unlabelled: what it saves, and how -------------------------------------------


def _unlabelled(folder: Path) -> Path:
    """Two tenants' delivered emails, each opened once (no labels, no honeypot)."""
    folder.mkdir(parents=True)
    (folder / "messages.csv").write_text(
        "message_id,tenant_id,channel,contact_id,sent_at,delivered_at\n"
        "m1,t1,email,k1,2025-01-01T00:00:00Z,2025-01-01T00:00:01Z\n"
        "m2,t2,email,k2,2025-01-01T00:00:00Z,2025-01-01T00:00:01Z\n"
    )
    (folder / "events.csv").write_text(
        "event_id,tenant_id,message_id,type,occurred_at\n"
        "e1,t1,m1,open,2025-01-01T00:01:00Z\n"
        "e2,t2,m2,open,2025-01-01T00:01:00Z\n"
    )
    return folder


Run = tuple[list[str], list[str]]  # (lines printed, per-tenant files saved)


@pytest.fixture
def unlabelled(world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """Runs evaluate_unlabelled on two tenants with the test model (``test/1``) under any URI,
    ``champion`` the registry's champion label: (lines printed, per-tenant files saved)."""
    import scoring.registry

    monkeypatch.setattr(scoring.registry, "load_model", lambda *_, **__: world["model"])
    data = _unlabelled(tmp_path / "data")
    settings = Settings(home=tmp_path / "home")
    saved = settings.home / "reports" / "accuracy"

    def run(uri: str | None, champion: str | None, out: Path | None = None) -> Run:
        monkeypatch.setattr(scoring.registry, "champion_version", lambda _: champion)
        printed = io.StringIO()
        evaluate_unlabelled(settings, data, uri, Console(file=printed, width=200), out)
        files = sorted(p.name for p in saved.iterdir()) if saved.is_dir() else []
        return printed.getvalue().splitlines(), files

    return run


@pytest.mark.parametrize(
    ("uri", "champion", "saves"),
    [
        (None, None, True),  # no --model: the champion was loaded
        ("models:/botfilter@champion", "test/1", True),
        ("models:/botfilter/1", "test/1", True),  # the champion by its number
        ("models:/botfilter/9", "botfilter/8", False),  # a rejected model
        ("models:/botfilter/9", None, False),  # no champion at all
    ],
)
def test_only_the_champions_estimates_are_saved_for_the_tenants(
    unlabelled, tmp_path: Path, uri: str | None, champion: str | None, saves: bool
) -> None:
    """The audit: `evaluate --unlabelled --model models:/botfilter/9` (a rejected model) replaced
    the tenants' saved estimates, which `metrics show` and the report then showed as theirs.
    Another model's are printed and written to --out only."""
    out = tmp_path / "estimates.json"
    lines, files = unlabelled(uri, champion, out)
    assert files == (["t1.json", "t2.json"] if saves else [])
    said = "not saved per tenant: --model names a model other than the champion (--out)"
    assert (said in lines) is not saves
    assert any(line.startswith("saved per tenant under ") for line in lines) is saves
    doc = json.loads(out.read_text())
    assert doc["model_version"] == "test/1"
    assert [r["tenant_id"] for r in doc["rows"]] == ["t1", "t2"]


@pytest.mark.parametrize("which", ["per tenant", "--out"])
def test_estimates_cut_by_a_full_disk_leave_the_previous_files(
    unlabelled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """The saved estimates and --out were written in place: a full disk left half a JSON file,
    which `metrics show` and the report then read as no estimate at all."""
    out = tmp_path / "estimates.json"
    unlabelled(None, None, out)
    saved = tmp_path / "home" / "reports" / "accuracy"
    before = {p: p.read_bytes() for p in (out, *saved.iterdir())}
    real = Path.write_text

    def write_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if which == "--out" and "estimates" not in self.name:  # the tenants' files written
            return real(self, data, *args, **kwargs)  # type: ignore[arg-type]
        real(self, data[: len(data) // 2])  # stopped by a full disk half way
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OSError, match="No space left on device"):
        unlabelled(None, None, out)
    monkeypatch.undo()
    after = {p: p.read_bytes() for p in (out, *saved.iterdir())}
    assert set(after) == set(before) and after[out] == before[out]
    if which == "per tenant":
        assert after == before
