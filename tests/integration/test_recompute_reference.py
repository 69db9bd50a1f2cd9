"""Done-when check: the recompute's four tables equal an independent, straightforward pandas
computation of the PRODUCT.md definitions (written here, not reusing jobs.metrics), on labelled
data: a random world full of edge cases and the simulator's world through the CLI and contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.settings import Settings
from jobs.exclusions import set_exclusion
from jobs.recompute import RecomputeOptions, Tables, recompute
from jobs.store import Store

pytestmark = pytest.mark.integration

OPEN_COLUMNS = ("opens_total", "opens_unique", "open_rate", "click_to_open_rate")


# --- the independent reference ----------------------------------------------------------------


def _row(tenant, channel, delivered, evs, filter_on):
    """One output row from a set of delivered messages and their (in-scope) events."""
    counted = evs[~(evs["is_bot"] & filter_on)]
    left_out = evs[evs["is_bot"] & filter_on]
    opens = counted[counted["type"] == "open"]
    clicks = counted[counted["type"] == "click"]
    row = {
        "delivered": delivered,
        "opens_total": len(opens),
        "opens_unique": counted["message_id"].nunique(),  # a click implies an open
        "clicks_total": len(clicks),
        "clicks_unique": clicks["message_id"].nunique(),
        "bot_opens_excluded": int((left_out["type"] == "open").sum()),
        "bot_clicks_excluded": int((left_out["type"] == "click").sum()),
        "bot_filter_applied": bool(filter_on),
    }
    row["open_rate"] = row["opens_unique"] / delivered if delivered else np.nan
    row["ctr"] = row["clicks_unique"] / delivered if delivered else np.nan
    ou = row["opens_unique"]
    row["click_to_open_rate"] = row["clicks_unique"] / ou if ou else np.nan
    if channel == "sms":
        for col in (*OPEN_COLUMNS, "bot_opens_excluded"):
            row[col] = np.nan
    return row


def reference_tables(
    messages: pd.DataFrame,
    events: pd.DataFrame,
    segments: pd.DataFrame,
    is_bot: pd.Series,
    exclusions: dict[tuple[str, str], bool],
    as_of: pd.Timestamp,
    days: int = 30,
) -> dict[str, pd.DataFrame]:
    """PRODUCT.md's metrics, group by group, the slow obvious way."""
    start = as_of - pd.Timedelta(days=days)
    m = messages[(messages["sent_at"] >= start) & (messages["sent_at"] < as_of)]
    m = m.assign(is_delivered=m["delivered_at"].notna())
    ev = events.merge(
        m[["tenant_id", "message_id", "channel", "is_delivered", "contact_id"]],
        on=["tenant_id", "message_id"],
    )
    ev = ev[ev["is_delivered"] & (ev["occurred_at"] < as_of)]
    ev = ev.assign(is_bot=ev["event_id"].map(is_bot).astype(bool))

    out: dict[str, list[dict]] = {k: [] for k in ("campaign", "automation", "segment", "day")}
    for key, table in (("campaign_id", "campaign"), ("automation_id", "automation")):
        for (tenant, value, channel), group in m.groupby(["tenant_id", key, "channel"]):
            ids = set(group["message_id"])
            evs = ev[(ev["tenant_id"] == tenant) & ev["message_id"].isin(ids)]
            on = exclusions.get((tenant, channel), False)
            row = _row(tenant, channel, int(group["is_delivered"].sum()), evs, on)
            out[table].append({"tenant_id": tenant, key: value, "channel": channel, **row})
    members = segments.drop_duplicates()
    for (tenant, segment), group in members.groupby(["tenant_id", "segment_id"]):
        contacts = set(group["contact_id"])
        for channel in ("email", "sms"):
            msgs = m[
                (m["tenant_id"] == tenant)
                & (m["channel"] == channel)
                & m["contact_id"].isin(contacts)
            ]
            if msgs.empty:
                continue
            evs = ev[(ev["tenant_id"] == tenant) & ev["message_id"].isin(set(msgs["message_id"]))]
            on = exclusions.get((tenant, channel), False)
            row = _row(tenant, channel, int(msgs["is_delivered"].sum()), evs, on)
            out["segment"].append(
                {"tenant_id": tenant, "segment_id": segment, "channel": channel, **row}
            )
    delivered_day = m.loc[m["is_delivered"]].assign(date=lambda f: f["delivered_at"].dt.date)
    ev_day = ev.assign(date=ev["occurred_at"].dt.date)
    for (tenant, channel), _ in m.groupby(["tenant_id", "channel"]):
        d = delivered_day[
            (delivered_day["tenant_id"] == tenant) & (delivered_day["channel"] == channel)
        ]
        e = ev_day[(ev_day["tenant_id"] == tenant) & (ev_day["channel"] == channel)]
        on = exclusions.get((tenant, channel), False)
        for day in sorted(set(d["date"]) | set(e["date"])):
            row = _row(tenant, channel, int((d["date"] == day).sum()), e[e["date"] == day], on)
            out["day"].append({"tenant_id": tenant, "date": day, "channel": channel, **row})
    names = {
        "campaign": "campaign_metrics",
        "automation": "automation_metrics",
        "segment": "segment_metrics",
        "day": "dashboard_daily",
    }
    return {names[k]: pd.DataFrame(v) for k, v in out.items()}


def assert_same(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    """Equal rows and values (NaN where the other has NaN), compared column by column."""
    keys = {
        "campaign_metrics": "campaign_id",
        "automation_metrics": "automation_id",
        "segment_metrics": "segment_id",
        "dashboard_daily": "date",
    }
    for name, key in keys.items():
        g = got[name].sort_values(["tenant_id", key, "channel"], ignore_index=True)
        w = want[name]
        assert len(g) > 0, f"{name}: empty, the test would prove nothing"
        w = w.sort_values(["tenant_id", key, "channel"], ignore_index=True)
        assert len(g) == len(w), f"{name}: {len(g)} rows, expected {len(w)}"
        for col in ("tenant_id", key, "channel"):
            assert g[col].astype(str).tolist() == w[col].astype(str).tolist(), (name, col)
        for col in w.columns:
            if col in ("tenant_id", key, "channel"):
                continue
            if col == "bot_filter_applied":
                assert g[col].astype(bool).tolist() == w[col].tolist(), (name, col)
                continue
            gv = pd.to_numeric(g[col]).astype(float).to_numpy()
            wv = w[col].astype(float).to_numpy()
            np.testing.assert_allclose(gv, wv, rtol=1e-12, equal_nan=True, err_msg=f"{name}.{col}")


@pytest.mark.parametrize(
    "as_of", ["2024-05-01T00:00:00Z", "2024-05-01T13:45:10Z"], ids=["midnight", "mid-day"]
)
def test_random_world_matches_reference(
    random_world, label_scores, store: Store, tmp_path: Path, as_of: str
) -> None:
    as_of_ts = pd.Timestamp(as_of)
    world = random_world(7, as_of_ts)
    settings = Settings(home=tmp_path / "home")
    set_exclusion(store, "t1", "email", True)
    set_exclusion(store, "t2", "sms", True)
    set_exclusion(store, "t3", "email", True)
    set_exclusion(store, "t3", "sms", True)
    data = Tables(world["messages"], world["events"], world["segments"])
    options = RecomputeOptions(as_of=as_of_ts, scores=label_scores(world["events"]))
    result = recompute(store, settings, data, options)
    exclusions = store.exclusions()
    is_bot = world["events"].set_index("event_id")["label"].eq("bot")
    want = reference_tables(
        world["messages"], world["events"], world["segments"], is_bot, exclusions, as_of_ts
    )
    assert_same(result.tables, want)
    # the window's dates roll up from the store to the same tables (whole days at midnight)
    if as_of_ts == as_of_ts.normalize():
        from jobs.metrics import MODULES, rollup

        stored = {name: rollup(store.read_partitions(name), MODULES[name]) for name in want}
        assert_same(stored, want)


# --- the simulator's world, through the contract and the CLI ----------------------------------


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import simulation

    out = tmp_path_factory.mktemp("sim")
    simulation.simulate(out, tenants=2, days=8, seed=11)
    return out


def test_simulated_world_through_cli_matches_reference(
    label_scores, sim_dir: Path, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contract
    from botfilter.cli import app

    validated = contract.load(sim_dir)
    scores_file = tmp_path / "scores.parquet"
    label_scores(validated.events).to_parquet(scores_file)
    end = validated.messages["sent_at"].max()
    as_of = (end - pd.Timedelta(hours=30)).floor("s")  # events after as_of and a partial day
    monkeypatch.setenv("BOTFILTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BOTFILTER_DATABASE_URL", store_url)
    monkeypatch.setenv("BOTFILTER_WINDOW_DAYS", "5")  # window starts mid-data
    runner = CliRunner()
    tenant = sorted(validated.messages["tenant_id"].unique())[0]
    # the store has not seen the tenant yet: switched on before its first recompute
    result = runner.invoke(
        app, ["settings", "set", "--tenant", tenant, "--email", "on", "--create"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    args = ["recompute", "--data", str(sim_dir), "--scores", str(scores_file)]
    args += ["--as-of", as_of.isoformat(), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    got = {
        name: pd.read_parquet(out / f"{name}.parquet")
        for name in ("campaign_metrics", "automation_metrics", "segment_metrics", "dashboard_daily")
    }
    store_ = Store(store_url)
    exclusions = store_.exclusions()
    store_.close()
    assert exclusions[(tenant, "email")] is True
    is_bot = validated.events.set_index("event_id")["label"].eq("bot")
    want = reference_tables(
        validated.messages, validated.events, validated.segments, is_bot, exclusions, as_of, 5
    )
    assert_same(got, want)
    assert (got["dashboard_daily"]["channel"] == "sms").any()
    assert (
        got["dashboard_daily"]
        .loc[got["dashboard_daily"]["channel"] == "sms", "opens_total"]
        .isna()
        .all()
    )
    assert got["campaign_metrics"]["bot_filter_applied"].any()
    assert (got["dashboard_daily"]["bot_opens_excluded"].fillna(0) > 0).any()
