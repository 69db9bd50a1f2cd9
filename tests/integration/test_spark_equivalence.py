"""The Spark engine equals the local engine exactly (local[2], one session for the module).

Same simulated data, same registered model: validation (clean tables, quarantine, counts),
scores (tenant and time-chunk partitioning) and the metric partitions and four tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]

pyspark = pytest.importorskip("pyspark")

KEYS = {
    "messages": ["message_id"],
    "events": ["event_id"],
    "segments": ["tenant_id", "segment_id", "contact_id"],
    "settings": ["tenant_id"],
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spark")


@pytest.fixture(scope="module")
def settings(home: Path) -> Settings:
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield Settings(home=home / "home", threads=1)
    mp.undo()


@pytest.fixture(scope="module")
def world(home: Path) -> Path:
    from simulation import simulate

    out = home / "world"
    simulate(out, tenants=2, days=3, seed=23)
    return out


@pytest.fixture(scope="module")
def model_uri(settings: Settings, world: Path) -> str:
    """A model trained and registered in MLflow; the champion alias when the gate promoted it."""
    from training.train import train

    result = train(settings, world)
    if result.decision.promote:
        return f"models:/{settings.model_name}@{settings.champion_alias}"
    return f"models:/{result.version}"


@pytest.fixture(scope="module")
def spark(settings: Settings):
    from jobs.spark.engine import spark_session

    session = spark_session(settings, "local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def local(world: Path, settings: Settings, model_uri: str):
    import contract
    from scoring.batch import score_validated

    validated = contract.load(world)
    return validated, score_validated(validated, settings, model_uri)


@pytest.fixture(scope="module")
def tables(spark, world: Path):
    from jobs.spark.tables import load_tables, part_files

    # A file: URI is read as a local path; s3a:// or abfss:// would go through Hadoop's.
    tables = load_tables(spark, world.resolve().as_uri())
    assert part_files(tables)  # validated in parts of whole tenants
    return tables


def _clean(tables, name: str) -> pd.DataFrame:
    from jobs.spark.tables import arrow_to_clean_pandas

    frame = arrow_to_clean_pandas(name, getattr(tables, name).toArrow())
    return frame.sort_values(KEYS[name], ignore_index=True)


def _same_scores(local: pd.DataFrame, spark: pd.DataFrame) -> None:
    a = local.set_index("event_id").sort_index()
    b = spark.set_index("event_id").sort_index()
    assert a.index.equals(b.index)
    assert len(a) > 1000
    assert np.abs(a["bot_score"].to_numpy() - b["bot_score"].to_numpy()).max() <= 1e-12
    assert (a["is_bot"].to_numpy() == b["is_bot"].to_numpy()).all()
    assert [list(r) for r in a["reasons"]] == [list(r) for r in b["reasons"]]
    assert (a["model_version"] == b["model_version"]).all()
    assert a["is_bot"].any() and not a["is_bot"].all()


def test_clean_tables_equal_the_contract(local, tables) -> None:
    validated, _ = local
    for name in KEYS:
        expected = getattr(validated, name)
        got = _clean(tables, name)
        expected = expected[list(got.columns)].sort_values(KEYS[name], ignore_index=True)
        pd.testing.assert_frame_equal(got, expected)
    assert tables.report.as_dict()["events"]["kept"] == len(validated.events)


def test_named_messages_are_those_a_clean_event_names(local, tables) -> None:
    """What scoring shuffles by tenant: every message a clean event names, and no other."""
    from jobs.spark.tables import arrow_to_clean_pandas

    validated, _ = local
    keys = ["tenant_id", "message_id"]
    named = validated.events[keys].drop_duplicates()
    expected = validated.messages.merge(named, on=keys)
    assert tables.named_messages is not None
    got = arrow_to_clean_pandas("messages", tables.named_messages.toArrow())
    got = got.sort_values(keys, ignore_index=True)
    expected = expected[list(got.columns)].sort_values(keys, ignore_index=True)
    assert 0 < len(got) < len(validated.messages)
    pd.testing.assert_frame_equal(got, expected)


@pytest.fixture(scope="module")
def spark_scores(spark, tables, settings: Settings, model_uri: str):
    """Scores of the Spark engine (one group per tenant), kept for the metrics test."""
    from jobs.spark.engine import score_spark

    scores = score_spark(spark, tables, settings, model_uri).cache()
    yield scores
    scores.unpersist()


def test_scores_equal_by_tenant(spark_scores, local) -> None:
    """The world is local Parquet grouped by tenant: each validated part is scored from the
    files its validation wrote."""
    from jobs.spark.engine import scores_to_pandas

    _same_scores(local[1], scores_to_pandas(spark_scores))


def test_scores_equal_by_tenant_when_rows_were_grouped_by_key(
    spark, world: Path, settings: Settings, model_uri: str, local
) -> None:
    """Tables validated by key (no part files): events and messages meet per tenant in a
    cogroup."""
    from jobs.spark.engine import score_spark, scores_to_pandas
    from jobs.spark.tables import load_tables, part_files

    tables = load_tables(spark, world, by_parts=False)
    assert part_files(tables) == []
    _same_scores(local[1], scores_to_pandas(score_spark(spark, tables, settings, model_uri)))
    tables.unpersist()


def test_scores_equal_by_time_chunk(
    spark, tables, settings: Settings, model_uri: str, local
) -> None:
    from jobs.spark.engine import score_spark, scores_to_pandas

    # Hour-long chunks: many chunks per tenant, each needing burst and message-history context.
    scores = score_spark(spark, tables, settings, model_uri, scheme="chunk", chunk_seconds=3600)
    _same_scores(local[1], scores_to_pandas(scores))


def test_metrics_equal(spark, tables, spark_scores, settings: Settings, local) -> None:
    from jobs import metrics as M
    from jobs.spark.engine import recompute_spark

    validated, scores = local
    sent = validated.messages["sent_at"]
    # A window that cuts the data: messages before it, events after as_of, a half first day.
    as_of = sent.min() + (sent.max() - sent.min()) * 0.75 + pd.Timedelta(minutes=7)
    tenants = sorted(validated.messages["tenant_id"].unique())
    exclusions = {(tenants[0], "email"): True, (tenants[-1], "sms"): True}
    narrow = settings.model_copy(update={"window_days": 2})
    window = M.Window.ending(as_of, 2)
    expected = M.compute_partitions(
        validated.messages,
        validated.events,
        scores,
        exclusions,
        window,
        segments=validated.segments,
    )
    got = recompute_spark(
        spark, tables, narrow, as_of=as_of, exclusions=exclusions, scores=spark_scores
    )
    assert got.scores_source == "given"
    for name, frame in expected.frames.items():
        pd.testing.assert_frame_equal(got.partitions.frames[name], frame, obj=name)
    pd.testing.assert_frame_equal(got.partitions.summary, expected.summary)
    assert got.partitions.events_used == expected.events_used > 0
    assert got.partitions.model_versions == expected.model_versions
    assert got.partitions.tenant_versions == expected.tenant_versions
    assert expected.tenant_versions  # each tenant with scored events names its models
    tables_expected = expected.tables()
    assert set(got.tables) == set(M.PRODUCT_TABLES)
    for name, frame in tables_expected.items():
        assert len(frame) > 0, name
        pd.testing.assert_frame_equal(got.tables[name], frame, obj=name)
    # The filter did something: the first tenant's email counts exclude bots.
    campaigns = got.tables["campaign_metrics"]
    filtered = campaigns[(campaigns["tenant_id"] == tenants[0]) & (campaigns["channel"] == "email")]
    assert filtered["bot_filter_applied"].all()
    assert filtered["bot_opens_excluded"].sum() > 0


@pytest.fixture(scope="module")
def dirty(home: Path, world: Path) -> Path:
    """The world with broken rows, events as CSV and settings as JSON Lines."""
    out = home / "dirty"
    out.mkdir()
    messages = pd.read_parquet(world / "messages.parquet")
    events = pd.read_parquet(world / "events.parquet")
    sms = messages.loc[messages["channel"] == "sms", "message_id"].iloc[0]
    conflict = messages.iloc[[5]].assign(campaign_id="other-campaign")
    messages = pd.concat([messages, messages.iloc[[3]], conflict], ignore_index=True)
    messages.to_parquet(out / "messages.parquet", index=False)
    e = events.astype({"link_position": "Int64", "asn": "Int64"}).astype(object)
    bad = e.iloc[:8].copy()
    bad.loc[bad.index[0], "message_id"] = "no-such-message"
    bad.loc[bad.index[1], "type"] = " OPEN "  # normalised: a good row (duplicate of row 1)
    bad.loc[bad.index[2], ["message_id", "type"]] = [sms, "open"]
    bad.loc[bad.index[3], "occurred_at"] = "not a time"
    bad.loc[bad.index[4], "ip"] = "999.1.1.1"
    bad.loc[bad.index[5], "event_id"] = f"  {bad.loc[bad.index[5], 'event_id']}  "
    bad.loc[bad.index[6], "occurred_at"] = pd.Timestamp("2001-01-01", tz="UTC")
    bad.loc[bad.index[7], "message_id"] = messages.iloc[5]["message_id"]
    pd.concat([e, bad], ignore_index=True).to_csv(out / "events.csv", index=False)
    pd.read_parquet(world / "segments.parquet").to_parquet(out / "segments.parquet", index=False)
    with (out / "settings.jsonl").open("w") as handle:
        for row in pd.read_parquet(world / "settings.parquet").itertuples(index=False):
            record = {**row._asdict(), "updated_at": row.updated_at.isoformat()}
            handle.write(json.dumps(record) + "\n")
        handle.write('{"tenant_id": "t009", "exclude_bots_email": "maybe"}\n')
        handle.write("{broken json\n")
    return out


@pytest.mark.parametrize("buckets", [None, 64])
def test_dirty_data_validates_like_the_contract(spark, dirty: Path, buckets: int | None) -> None:
    """Also with many buckets: the copies of an event id that name other messages then land
    in other buckets, and go through the pass that groups events by event id."""
    import contract
    from jobs.spark.tables import load_tables

    expected = contract.load(dirty)
    got = load_tables(spark, dirty, buckets=buckets)
    assert got.report.as_dict() == expected.report.as_dict()
    quarantine = got.quarantine.toPandas().sort_values(["table", "row_number"], ignore_index=True)
    want = expected.quarantine.sort_values(["table", "row_number"], ignore_index=True)
    assert len(want) >= 8
    pd.testing.assert_frame_equal(quarantine, want, check_dtype=False)
    for name in KEYS:
        frame = _clean(got, name)
        clean = getattr(expected, name)[list(frame.columns)]
        pd.testing.assert_frame_equal(frame, clean.sort_values(KEYS[name], ignore_index=True))
    got.unpersist()


def test_recompute_into_the_store_with_the_spark_engine(
    spark, local, settings: Settings, home: Path, model_uri: str
) -> None:
    """``jobs.recompute.recompute`` with a Spark ``scorer`` and ``engine``: Spark scores what the store lacks and
    aggregates; locks, runs and the store write stay shared. Fresh store, rerun on the same store
    (stored scores, which carry ``top_reason``, not ``reasons``), then after a setting toggle."""
    from jobs.exclusions import set_exclusion, tenant_setting
    from jobs.metrics import compute_partitions
    from jobs.recompute import RecomputeOptions, recompute
    from jobs.spark.engine import partitions_engine, spark_scorer
    from jobs.store import Store

    validated, scores = local
    as_of = validated.events["occurred_at"].max() + pd.Timedelta(seconds=1)
    version = scores["model_version"].iat[0]
    tenant = sorted(validated.messages["tenant_id"].unique())[-1]
    stores = {
        name: (settings.model_copy(update={"home": home / f"store-{name}"}))
        for name in ("local", "spark")
    }
    sources = {"fresh": ("file", "scored"), "rerun": ("file", "store"), "toggle": ("file", "store")}
    applied: dict[str, bool] = {}
    for step, (local_source, spark_source) in sources.items():
        results = {}
        for name, run_settings in stores.items():
            store = Store.open(run_settings)
            if step == "toggle":
                set_exclusion(store, tenant, "sms", not tenant_setting(store, tenant)["sms"])
            if name == "local":
                options = RecomputeOptions(as_of=as_of, scores=scores, engine=compute_partitions)
            else:
                options = RecomputeOptions(
                    as_of=as_of,
                    scorer=spark_scorer(spark, settings, model_uri),
                    model_version=version,
                    engine=partitions_engine(spark),
                )
            results[name] = recompute(store, run_settings, validated, options)
        assert results["local"].scores_source == local_source
        assert results["spark"].scores_source == spark_source, step
        assert results["spark"].model_versions == (version,)
        assert results["spark"].rows_written == results["local"].rows_written > 0
        assert results["spark"].events_used == results["local"].events_used
        assert results["spark"].queue_applied == results["local"].queue_applied
        for table, frame in results["local"].tables.items():
            pd.testing.assert_frame_equal(results["spark"].tables[table], frame, obj=table)
        campaigns = results["spark"].tables["campaign_metrics"]
        sms = campaigns[(campaigns["tenant_id"] == tenant) & (campaigns["channel"] == "sms")]
        assert len(sms) > 0
        applied[step] = bool(sms["bot_filter_applied"].all())
    # The toggle was applied (queued, recomputed): the tenant's SMS filter state flipped.
    assert applied["toggle"] != applied["rerun"] == applied["fresh"]


def _cli(args: list[str], env: dict[str, str]) -> str:
    """Run the ``botfilter`` CLI in this process (the module's Spark session is reused)."""
    from typer.testing import CliRunner

    from botfilter.cli import app

    result = CliRunner().invoke(app, args, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    from jobs import metrics as M

    return {name: pd.read_parquet(out / f"{name}.parquet") for name in M.PRODUCT_TABLES}


def test_recompute_command_reruns_and_toggles_like_the_local_engine(
    world: Path, settings: Settings, model_uri: str, local, home: Path, spark
) -> None:
    """``botfilter recompute --engine spark`` equals ``--engine local`` on a fresh store, again
    on the same store (stored scores reused: the steady state), and after a setting toggle."""
    from jobs import metrics as M

    validated, _ = local
    as_of = (validated.events["occurred_at"].max() + pd.Timedelta(seconds=1)).isoformat()
    tenant = sorted(validated.messages["tenant_id"].unique())[0]
    env = {
        "BOTFILTER_HOME": str(settings.home),
        "BOTFILTER_TRACKING_URI": settings.mlflow_uri,
        "BOTFILTER_THREADS": "1",
    }
    stores = {
        e: {**env, "BOTFILTER_DATABASE_URL": f"sqlite:///{home}/cli-{e}.db"}
        for e in ("local", "spark")
    }
    before: dict[str, pd.DataFrame] | None = None
    for step in ("fresh", "rerun", "toggle"):
        got = {}
        for engine, engine_env in stores.items():
            if step == "toggle":
                on = (
                    "off"
                    if validated.settings.set_index("tenant_id").at[tenant, "exclude_bots_email"]
                    else "on"
                )
                _cli(["settings", "set", "--tenant", tenant, "--email", on], engine_env)
            out = home / f"cli-{engine}-{step}"
            args = ["recompute", "--data", str(world), "--as-of", as_of, "--out", str(out)]
            text = _cli([*args, "--model", model_uri, "--engine", engine], engine_env)
            assert ("scores: store " in text) == (step != "fresh"), text
            got[engine] = _tables(out)
        for name, frame in got["local"].items():
            assert len(frame) > 0, name
            pd.testing.assert_frame_equal(got["spark"][name], frame, obj=f"{step}: {name}")
        if step == "toggle":  # the toggle changed the tenant's email metrics, in both engines
            campaigns = got["local"]["campaign_metrics"]
            mine = campaigns[(campaigns["tenant_id"] == tenant) & (campaigns["channel"] == "email")]
            old = before["campaign_metrics"]
            old = old[(old["tenant_id"] == tenant) & (old["channel"] == "email")]
            assert mine["bot_filter_applied"].all() != old["bot_filter_applied"].all()
            assert not mine["opens_total"].equals(old["opens_total"])
        before = got["local"]
    assert set(before) == set(M.PRODUCT_TABLES)


def test_score_command_path_writes_the_local_engines_file(
    spark, world: Path, settings: Settings, model_uri: str, local, home: Path
) -> None:
    """What ``botfilter score --engine spark`` runs: a plain directory, the model resolved on the
    driver, the scores file written as the local engine writes it; run again over its own output
    (the rerun), the file is the same."""
    from jobs.spark.engine import run_score
    from scoring.scores_file import read_scores

    out = home / "spark-scores.parquet"
    for _ in range(2):
        run = run_score(settings, world, out, model_uri, "local[2]")
        assert run.events == len(local[1]) and run.bots == int(local[1]["is_bot"].sum())
        assert run.report.as_dict() == local[0].report.as_dict()
        _same_scores(local[1], read_scores(out))


def test_tenants_sharing_message_and_event_ids_stay_apart(
    tenant_scores, spark, tmp_path: Path
) -> None:
    """Issue 14 item 3: Spark validation and the event context key messages by (tenant_id,
    message_id), as the local engine does; nothing is quarantined."""
    from jobs.spark.engine import _with_context
    from jobs.spark.tables import load_tables

    data = tmp_path / "data"
    data.mkdir()
    (data / "messages.csv").write_text(
        "message_id,tenant_id,channel,campaign_id,contact_id,sent_at,delivered_at\n"
        "m1,t1,email,c1,k1,2025-01-01T00:00:00Z,2025-01-01T00:00:01Z\n"
        "m1,t2,sms,c1,k9,2025-01-01T00:00:00Z,2025-01-01T00:00:01Z\n"
    )
    (data / "events.csv").write_text(
        "event_id,tenant_id,message_id,type,occurred_at\n"
        "e1,t1,m1,open,2025-01-01T00:01:00Z\n"
        "e1,t2,m1,click,2025-01-01T00:02:00Z\n"
    )
    tables = load_tables(spark, str(data))
    try:
        assert tables.quarantine.count() == 0
        rows = _with_context(tables).select("tenant_id", "event_id", "channel", "contact_id")
        assert sorted(tuple(r) for r in rows.collect()) == [
            ("t1", "e1", "email", "k1"),
            ("t2", "e1", "sms", "k9"),
        ]
        # the metrics match each tenant's event to its own score, as the local engine does
        import contract
        from jobs.metrics import Window, compute_partitions
        from jobs.spark.engine import scores_from_pandas
        from jobs.spark.metrics import compute_partitions_spark

        window = Window.ending("2025-01-20", 30)
        exclusions = {("t1", "email"): True, ("t2", "sms"): True}
        scored = scores_from_pandas(spark, tenant_scores())
        parts = compute_partitions_spark(tables, scored, exclusions, window)
        clean = contract.load(data)
        local = compute_partitions(
            clean.messages, clean.events, tenant_scores(), exclusions, window
        )
        for name in ("campaign_metrics", "dashboard_daily"):
            got = parts.tables()[name].sort_values(["tenant_id", "channel"], ignore_index=True)
            want = local.tables()[name].sort_values(["tenant_id", "channel"], ignore_index=True)
            pd.testing.assert_frame_equal(got, want, check_dtype=False)
        camp = local.tables()["campaign_metrics"].set_index("tenant_id")
        assert camp.loc["t1", "bot_opens_excluded"] == 1 and camp.loc["t2", "clicks_total"] == 1
    finally:
        tables.unpersist()


@pytest.mark.parametrize("scheme", ["tenant", "chunk"])
def test_an_event_id_two_tenants_share_for_different_messages_scores(
    spark, settings: Settings, model_uri: str, tmp_path: Path, scheme: str
) -> None:
    """Two tenants may use one event id, here for messages of different ids: validation then
    checks that id apart, and scoring joined (or cogrouped) two views of one cached result,
    which Spark refused as ambiguous ("internal error (AnalysisException ...)", an audit)."""
    import contract
    from jobs.spark.engine import score_spark, scores_to_pandas
    from scoring.batch import score_validated

    data = tmp_path / "data"
    data.mkdir()
    (data / "messages.csv").write_text(
        "message_id,tenant_id,channel,campaign_id,contact_id,sent_at,delivered_at\n"
        "m1,t1,email,c1,k1,2025-01-01T00:00:00Z,2025-01-01T00:00:01Z\n"
        "m2,t2,email,c1,k9,2025-01-01T00:00:00Z,2025-01-01T00:00:01Z\n"
    )
    (data / "events.csv").write_text(
        "event_id,tenant_id,message_id,type,occurred_at\n"
        "e1,t1,m1,open,2025-01-01T00:01:00Z\n"
        "e1,t2,m2,click,2025-01-01T00:02:00Z\n"
    )
    got = scores_to_pandas(score_spark(spark, data, settings, model_uri, scheme=scheme))
    want = score_validated(contract.load(data), settings, model_uri)
    key = ["tenant_id", "event_id"]
    got, want = (f.sort_values(key, ignore_index=True) for f in (got, want))
    assert got[key].values.tolist() == [["t1", "e1"], ["t2", "e1"]]
    assert np.abs(got["bot_score"] - want["bot_score"]).max() <= 1e-12
    assert got["is_bot"].tolist() == want["is_bot"].tolist()


def test_events_find_their_message_by_tenant_and_message_id(spark) -> None:
    """Two tenants may use the same message_id (PRODUCT.md): each event gets its own tenant's
    message as context, never the other tenant's (nor both)."""
    from contract import validate
    from jobs.spark.engine import _with_context, spark_frames

    def tenant(name: str, channel: str, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        messages = pd.DataFrame(
            {
                "message_id": ["m1"],
                "tenant_id": [name],
                "channel": [channel],
                "contact_id": [f"c-{name}"],
                "sent_at": ["2026-01-01T00:00:00Z"],
            }
        )
        events = pd.DataFrame(
            {
                "event_id": [f"e-{name}"],
                "tenant_id": [name],
                "message_id": ["m1"],
                "type": [kind],
                "occurred_at": ["2026-01-01T00:01:00Z"],
            }
        )
        tables = validate.validate_tables({"messages": messages, "events": events})
        return tables.messages, tables.events

    (ma, ea), (mb, eb) = tenant("ta", "email", "open"), tenant("tb", "sms", "click")
    tables = spark_frames(
        spark, pd.concat([ma, mb], ignore_index=True), pd.concat([ea, eb], ignore_index=True)
    )
    ctx = _with_context(tables).toPandas().sort_values("event_id", ignore_index=True)
    assert ctx[["event_id", "tenant_id", "channel", "contact_id"]].values.tolist() == [
        ["e-ta", "ta", "email", "c-ta"],
        ["e-tb", "tb", "sms", "c-tb"],
    ]


def test_validation_groups_fill_every_shuffle_partition(spark) -> None:
    """The group ids are placed by Spark's own partition hash: each partition gets its share.
    (The ids 0..n-1 had put every group in one of two partitions: one core validated all.)"""
    from collections import Counter

    from pyspark.sql import functions as F

    from jobs.spark.tables import BUCKETS_PER_PARTITION, _bucket_labels

    for partitions in (2, 3, 7):
        labels = _bucket_labels(spark, partitions, None)
        assert len(set(labels)) == len(labels) == partitions * BUCKETS_PER_PARTITION
        placed = (
            spark.createDataFrame([(label,) for label in labels], "id bigint")
            .select(F.pmod(F.hash("id"), F.lit(partitions)))
            .collect()
        )
        assert Counter(row[0] for row in placed) == dict.fromkeys(
            range(partitions), BUCKETS_PER_PARTITION
        )


def test_unscored_events_of_several_tenants_are_counted_together(spark, local) -> None:
    """Metrics run tenant by tenant on executors, but unscored events raise MissingScores with
    their count over every tenant, as the local engine's does."""
    from jobs import metrics as M
    from jobs.spark.engine import scores_from_pandas, spark_frames
    from jobs.spark.metrics import compute_partitions_spark

    validated, scores = local
    messages, events = validated.messages, validated.events
    window = M.Window.ending(events["occurred_at"].max() + pd.Timedelta(seconds=1), 30)
    sent = messages.loc[messages["delivered_at"].notna() & (messages["sent_at"] >= window.start)]
    counted = events.merge(sent[["tenant_id", "message_id"]])
    first = counted.groupby("tenant_id")["event_id"].first()
    assert len(first) >= 2
    dropped = list(first.iloc[:2].items())  # one counted event of each of two tenants
    keys = pd.MultiIndex.from_frame(scores[["tenant_id", "event_id"]])
    partial = scores[~keys.isin(dropped)]
    with pytest.raises(M.MissingScores, match="^2 events have no score"):
        M.compute_partitions(messages, events, partial, {}, window, validated.segments)
    tables = spark_frames(spark, messages, events, validated.segments)
    with pytest.raises(M.MissingScores, match="^2 events have no score") as got:
        compute_partitions_spark(tables, scores_from_pandas(spark, partial), {}, window)
    assert got.value.example in {event for _, event in dropped}


def test_native_keys_trim_whatever_the_full_expression_trims(spark) -> None:
    """The cheap test in front of the trimming expression never lets an end character through:
    every value gets the key the expression applied to all values gives."""
    from pyspark.sql import functions as F

    from jobs.spark.tables import _TRIM, _native_key

    values = [
        "a", "ab", " a", "a ", "\ta\n", "a\x00", "\x7fa", "a\u00a0", "\u00a0a", "\u3000a\ufeff",
        "\u200ba", "a\u2028", "a\u1680", "\u180ea", "é", "aé", "éa", "日本", "a\u205f", "", "  ",
        "a\u2064", "x\x1f",
    ]  # fmt: skip
    frame = spark.createDataFrame([(v,) for v in values], "v string")
    full = F.regexp_replace(F.col("v"), f"^{_TRIM}+|{_TRIM}+$", "")
    rows = frame.select("v", _native_key("v").alias("got"), full.alias("want")).collect()
    assert [(r["v"], r["got"]) for r in rows] == [(r["v"], r["want"]) for r in rows]
    trimmed = {r["v"]: r["got"] for r in rows}
    assert trimmed["\u3000a\ufeff"] == "a" and trimmed["a\u00a0"] == "a" and trimmed["aé"] == "aé"


@pytest.mark.parametrize("by_parts", [True, False])
def test_parquet_grouped_by_tenant_validates_like_the_contract(
    spark, parts_world, by_parts: bool
) -> None:
    """Tasks that read whole tenants from their own row groups (two runs of parts here), and
    the grouping by key, both give the contract's counts, quarantine and clean rows: a broken
    event, a repeated one, padded tenant ids, and an event of t2 naming a message only t1 has
    (another task's tenant: "tenant mismatch with message", not "unknown message")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import contract
    from jobs.spark.tables import load_tables

    data = parts_world(pd.Timestamp("2024-03-31T00:00:00Z"))
    for path in data.glob("*.parquet"):
        frame = pd.read_parquet(path).sort_values("tenant_id", kind="stable", ignore_index=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, path, row_group_size=256)
    expected = contract.load(data)
    assert expected.report.tables["events"].quarantined["tenant mismatch with message"] == 1
    got = load_tables(spark, data, by_parts=by_parts, part_events=900)
    assert got.report.as_dict() == expected.report.as_dict()
    quarantine = got.quarantine.toPandas().sort_values(["table", "row_number"], ignore_index=True)
    want = expected.quarantine.sort_values(["table", "row_number"], ignore_index=True)
    pd.testing.assert_frame_equal(quarantine, want, check_dtype=False)
    for name in KEYS:
        frame = _clean(got, name)
        clean = getattr(expected, name)[list(frame.columns)]
        pd.testing.assert_frame_equal(frame, clean.sort_values(KEYS[name], ignore_index=True))
    if got.named_messages is not None:
        named = set(got.named_messages.toPandas()["message_id"])
        assert named == set(expected.events["message_id"])
    got.unpersist()


def test_a_table_given_as_a_directory_of_parquet_parts_in_a_file_uri(
    spark, world, tmp_path
) -> None:
    """A file: URI is read as a local path where it can be (tenant parts); a table that is a
    directory of Parquet parts is not one file: the rows are grouped by key, as before."""
    import pyarrow.parquet as pq

    import contract
    from jobs.spark.tables import load_tables, part_files

    data = tmp_path / "data"
    data.mkdir()
    for name in ("messages", "segments", "settings"):
        (data / f"{name}.parquet").write_bytes((world / f"{name}.parquet").read_bytes())
    events = pq.read_table(world / "events.parquet")
    half = events.num_rows // 2
    (data / "events.parquet").mkdir()
    pq.write_table(events.slice(0, half), data / "events.parquet" / "part-0.parquet")
    pq.write_table(events.slice(half), data / "events.parquet" / "part-1.parquet")
    got = load_tables(spark, data.resolve().as_uri())
    assert part_files(got) == []

    def counts(report) -> dict:  # noqa: ANN001
        return {n: {**t, "source": None} for n, t in report.as_dict().items()}

    assert counts(got.report) == counts(contract.load(world).report)
    assert got.events.count() == contract.load(world).report.tables["events"].kept
    got.unpersist()


def test_a_tenant_with_segments_but_no_window_message_counts_nothing(spark, local) -> None:
    """A tenant whose window holds no message but who has segments (or events of older
    messages) still forms a group of the per-tenant cogroup; its empty answer crashed the
    executors under pyarrow 23 (``pa.table({}, schema=...)``), so `botfilter recompute
    --engine spark` failed as an internal error where the local engine counts nothing."""
    from jobs import metrics as M
    from jobs.spark.engine import scores_from_pandas, spark_frames
    from jobs.spark.metrics import compute_partitions_spark

    validated, scores = local
    messages, events, segments = validated.messages, validated.events, validated.segments
    tenants = sorted(messages["tenant_id"].unique())
    gone = tenants[-1]
    assert (segments["tenant_id"] == gone).any()
    messages = messages[messages["tenant_id"] != gone]
    events = events[events["tenant_id"] != gone]
    scores = scores[scores["tenant_id"] != gone]
    window = M.Window.ending(events["occurred_at"].max() + pd.Timedelta(seconds=1), 30)
    expected = M.compute_partitions(messages, events, scores, {}, window, segments)
    tables = spark_frames(spark, messages, events, segments)
    got = compute_partitions_spark(tables, scores_from_pandas(spark, scores), {}, window)
    for name, frame in expected.frames.items():
        assert gone not in set(frame["tenant_id"]), name
        pd.testing.assert_frame_equal(got.frames[name], frame, obj=name)
    pd.testing.assert_frame_equal(got.summary, expected.summary)
    # No window message of any tenant at all: every group is empty.
    before = M.Window.ending(validated.messages["sent_at"].min() - pd.Timedelta(days=40), 30)
    nothing = compute_partitions_spark(tables, scores_from_pandas(spark, scores), {}, before)
    assert all(frame.empty for frame in nothing.frames.values())
    assert nothing.events_used == 0
