"""Score once (issue 19 item 5): the API records its answers in the score store, and a
recompute after API traffic takes them and scores only the events the API never answered."""

from __future__ import annotations

import copy
import threading
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from contract.validate import validate_tables
from core.settings import Settings
from features.definitions import FEATURE_NAMES, LONGEST_WINDOW_S
from features.pipeline import Enrichers, build_features, event_context
from jobs.recompute import RecomputeOptions, Tables, recompute
from jobs.store import Store
from scoring.batch import score_context
from scoring.model import BotModel
from serving.client import api_events
from serving.recorder import ScoreRecorder, answers_frame
from serving.runtime import Runtime
from serving.state import MemoryState
from simulation.core import generate


@pytest.fixture(scope="module")
def world() -> dict:
    validated = validate_tables(generate(tenants=2, days=3, seed=11))
    ctx = event_context(validated.messages, validated.events).reset_index(drop=True)
    enrichers = Enrichers.load()
    feats = build_features(ctx, enrichers)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1, "num_threads": 1},
        lgb.Dataset(feats[list(FEATURE_NAMES)].to_numpy(np.float64), ctx["label"] == "bot"),
        num_boost_round=15,
    )
    model = BotModel(booster, list(FEATURE_NAMES), (1.0, 0.0), {"default": 0.5}, "test/1", 1)
    as_of = validated.events["occurred_at"].max().ceil("D")
    items = api_events(validated.messages, validated.events)
    return {
        "data": validated,
        "model": model,
        "enrichers": enrichers,
        "items": items,
        "as_of": as_of,
    }


class CountingScorer:
    """The batch scorer with the world's model, remembering the events each call was given."""

    def __init__(self, world: dict) -> None:
        self.world = world
        self.calls: list[set[tuple[str, str]]] = []

    def __call__(self, tables: Tables) -> pd.DataFrame:
        e = tables.events
        self.calls.append(set(zip(e["tenant_id"], e["event_id"], strict=True)))
        ctx = event_context(tables.messages, tables.events)
        return score_context(ctx, self.world["model"], self.world["enrichers"])


def serve(world: dict, store: Store, items: list[dict], settings: Settings) -> ScoreRecorder:
    """Answer ``items`` through the API's runtime (requests of 200), recording into ``store``."""
    state = MemoryState(history_s=35 * 86_400, burst_s=2 * LONGEST_WINDOW_S)
    runtime = Runtime(settings, world["model"], world["enrichers"], state)
    runtime.recorder = recorder = ScoreRecorder(lambda: store, flush_s=0.05)
    for lo in range(0, len(items), 200):
        runtime.score(items[lo : lo + 200])
    runtime.close()  # writes what is still queued
    return recorder


def run(world: dict, store: Store, settings: Settings, **options):
    model = world["model"]
    options = RecomputeOptions(
        as_of=world["as_of"], model_version=model.version, model_id=model.model_id, **options
    )
    return recompute(store, settings, world["data"], options)


def test_recompute_after_api_traffic_rescores_nothing_the_api_answered(
    world, tmp_path, final_answers, pending_events, request_chunks
) -> None:
    settings = Settings(home=tmp_path / "home")
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    items = world["items"]
    answered = items[: int(len(items) * 0.7)]
    recorder = serve(world, store, answered, settings)
    # Only final answers are recorded: a provisional one (its look-ahead window had not passed
    # in what the API had seen) is scored again by the batch job.
    final = final_answers(request_chunks(answered, 200))
    assert 0 < len(final) < len(answered)
    assert (recorder.recorded, recorder.dropped) == (len(final), 0)
    tenants = sorted(world["data"].messages["tenant_id"].unique())
    api = store.load_scores(tenants, world["model"].model_id, reasons=True)
    assert set(zip(api["tenant_id"], api["event_id"], strict=True)) == final

    scorer = CountingScorer(world)
    result = run(world, store, settings, scorer=scorer)
    assert result.scores_source == "store+scored"
    stored = store.load_scores(tenants, world["model"].model_id, reasons=True)
    # Each event is stored once: the recompute added only what the API never answered finally,
    # its own provisional scores (the tenants' last LOOKAHEAD_S) marked as such ...
    pending = pending_events(world["data"].events)
    assert pending and not pending & final
    assert store.score_versions(tenants) == {world["model"].model_id: len(items)}
    assert len(stored) == len(items)
    marked = stored.loc[stored["provisional_until"].notna()]
    assert set(zip(marked["tenant_id"], marked["event_id"], strict=True)) == pending
    # ... and the API's answers are what the recompute used, unchanged.
    keys = ["tenant_id", "event_id"]
    both = api.merge(stored, on=keys, suffixes=("_api", ""))
    assert len(both) == len(final)
    assert (both["bot_score_api"] == both["bot_score"]).all()
    # Parity: the same numbers as scoring everything in the batch job.
    batch = score_context(
        event_context(world["data"].messages, world["data"].events),
        world["model"],
        world["enrichers"],
    )
    check = stored.merge(batch, on=keys, suffixes=("", "_batch"))
    assert len(check) == len(stored)
    np.testing.assert_allclose(check["bot_score"], check["bot_score_batch"], rtol=0, atol=1e-9)

    # Everything answered by the API: the recompute scores again only what the API answered
    # provisionally (in one call, with its context), and counts the same.
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    serve(world, other, items, settings)
    idle = CountingScorer(world)
    again = run(world, other, settings, scorer=idle)
    assert again.scores_source == "store+scored" and len(idle.calls) == 1
    for name, table in again.tables.items():
        pd.testing.assert_frame_equal(table, result.tables[name], obj=name)

    # bot_interactions too (by bot kind, from each event's top reason): fresh rows beside stored
    # ones once lost their top reason and counted as "unknown"
    def kinds(s: Store) -> pd.DataFrame:
        rows = s.read_partitions("bot_interactions")
        return rows.drop(columns=[c for c in rows.columns if c.endswith("_at")], errors="ignore")

    assert again.rows_written == result.rows_written
    pd.testing.assert_frame_equal(kinds(other), kinds(store))


def test_recording_never_blocks_or_fails_a_request(world) -> None:
    """A store that hangs, then fails: answers come back at once, the queue stays bounded."""
    release = threading.Event()

    class Hanging:
        def save_scores(self, *args, **kwargs):
            release.wait(10)
            raise RuntimeError("store down")

    recorder = ScoreRecorder(lambda: Hanging(), max_pending=300, flush_events=100, flush_s=0.01)
    items = world["items"][:100]
    answer = {"bot_score": 0.5, "is_bot": False, "reasons": (), "model_version": "test/1"}
    answers = [{"event_id": i["event_id"], **answer} for i in items]
    events = [("t1", pd.Timestamp("2024-03-01T00:00:00Z").value)] * len(items)
    start = time.perf_counter()
    for _ in range(50):
        recorder.record(events, answers, world["model"])
    assert time.perf_counter() - start < 0.5
    assert recorder.dropped >= 50 * 100 - 300 - 100  # all but what is queued or being written
    release.set()
    recorder.close()
    assert recorder.recorded == 0 and recorder.dropped == 50 * 100


def test_answers_frame_skips_errors_and_keeps_the_clean_tenant_and_time(world) -> None:
    """The recorder is handed each event's clean (tenant, occurred_at ns), None where the
    contract refused it: the store keys scores by the tenant the contract read."""
    model = world["model"]
    events = [
        ("t1", pd.Timestamp("2024-03-01T00:00:01.5Z").value),
        ("t1", pd.Timestamp("2024-03-01T00:00:00Z").value),
        None,
    ]
    answer = {"bot_score": 0.7, "is_bot": True, "reasons": ("a",), "model_version": "test/1"}
    answers = [
        {"event_id": "e1", **answer},
        {"event_id": "e2", **answer},
        {"event_id": "e3", "error": "bad"},
    ]
    frame = answers_frame([(events, answers, model)])
    assert frame["event_id"].tolist() == ["e1", "e2"]
    assert frame["tenant_id"].tolist() == ["t1", "t1"]
    assert frame["occurred_at"].tolist() == [
        pd.Timestamp("2024-03-01T00:00:01.5Z"),
        pd.Timestamp("2024-03-01T00:00:00Z"),
    ]
    assert set(frame["model_id"]) == {model.model_id}


def test_one_tenants_refused_rows_leave_other_tenants_answers_recorded(world, tmp_path) -> None:
    """A store that refuses one tenant's rows (PostgreSQL: an id too long for its index) used
    to drop every tenant's answers of the flush."""
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")

    class Picky:
        def save_scores(self, frame, tenants, times, model_id):
            if (tenants == "x" * 12_000).any():
                raise RuntimeError("index row requires 12824 bytes")
            return store.save_scores(frame, tenants, times, model_id=model_id)

    recorder = ScoreRecorder(lambda: Picky(), flush_s=60)
    answer = {"bot_score": 0.5, "is_bot": False, "reasons": (), "model_version": "test/1"}
    at = pd.Timestamp("2024-03-01T00:00:00Z").value
    tenants = ["good1", "x" * 12_000, "good2"]
    recorder.record(
        [(t, at) for t in tenants],
        [{"event_id": f"e{i}", **answer} for i in range(3)],
        world["model"],
    )
    recorder.close()
    assert (recorder.recorded, recorder.dropped) == (2, 1)
    kept = store.load_scores(["good1", "good2"], world["model"].model_id)
    assert sorted(kept["tenant_id"]) == ["good1", "good2"]


def test_a_retry_after_a_reload_records_nothing(
    world, tmp_path, final_answers, request_chunks
) -> None:
    """Events sent again after the model changed are answered from the window state, as first
    answered: recording those answers again stored the old model's under the new model's id
    (a recompute with the new champion then reused them), and every retry added a row."""
    settings = Settings(home=tmp_path / "home")
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    first, newer = world["model"], copy.copy(world["model"])
    newer.version, newer.calibration = "test/2", (1.0, 0.25)  # another content id
    assert newer.model_id != first.model_id
    state = MemoryState(history_s=35 * 86_400, burst_s=2 * LONGEST_WINDOW_S)
    runtime = Runtime(settings, first, world["enrichers"], state)
    runtime.recorder = recorder = ScoreRecorder(lambda: store, flush_s=0.05)
    items = world["items"][:600]
    for lo in range(0, len(items), 200):
        runtime.score(items[lo : lo + 200])
    runtime._model = newer  # what /reload does once the champion moved
    for lo in range(0, len(items), 200):
        again = runtime.score(items[lo : lo + 200])
        assert {a["model_version"] for a in again} == {"test/1"}
    runtime.score(items[:10] + items[:10])  # repeats within a request, answered as the first
    runtime.close()
    tenants = sorted({i["tenant_id"] for i in items})
    # provisional answers are never recorded
    final = len(final_answers(request_chunks(items, 200)))
    assert final > 0
    assert store.score_versions(tenants) == {first.model_id: final}
    assert (recorder.recorded, recorder.dropped) == (final, 0)


def _late_events(world: dict, late_s: int) -> set[int]:
    """Positions (of the time-ordered items) of events that, delivered ``late_s`` late, read a
    trimmed burst history while no other event's answer depends on them: another event of
    their tenant shares their /24 (/48) or ASN in the longest window before them, none in the
    one after them, and their message has no other event from the look-ahead window before
    them on."""
    items, w = world["items"], LONGEST_WINDOW_S
    t = np.array([pd.Timestamp(i["occurred_at"]).value // 10**9 for i in items])
    ips = np.array([i["ip"] for i in items], dtype=object)
    asns = np.array([np.nan if i["asn"] is None else i["asn"] for i in items], dtype=np.float64)
    ip = world["enrichers"].ip.enrich(ips, asns)
    tenant = np.array([i["tenant_id"] for i in items], dtype=object)
    message = np.array([i["message_id"] for i in items], dtype=object)
    prefix, asn = ip["prefix_key"], ip["asn"]
    chosen = set()
    for k in range(len(items)):
        ours = tenant == tenant[k]
        ours[k] = False
        shares = ours & ((prefix == prefix[k]) | ((asn == asn[k]) & (asn[k] > 0)))
        if (
            (shares & (t > t[k]) & (t <= t[k] + w)).any()
            or (ours & (message == message[k]) & (t >= t[k] - w)).any()
            or not (shares & (t >= t[k] - w) & (t < t[k])).any()
            or not (ours & (t >= t[k] + late_s - w) & (t <= t[k] + late_s)).any()
        ):
            continue
        chosen.add(k)
    return chosen


def test_an_event_later_than_the_lateness_is_scored_again_by_the_recompute(world, tmp_path):
    """Events delivered 1,500 s late read a burst history the window state had trimmed (to the
    longest window plus 600 s of lateness before their tenant's newest event): their answers
    are given but not recorded as final, so the recompute after that traffic scores them again
    and stores exactly what a recompute on a fresh store does."""
    settings = Settings(home=tmp_path / "home")
    items = world["items"]
    assert [i["occurred_at"] for i in items] == sorted(i["occurred_at"] for i in items)
    late = _late_events(world, 1500)
    assert len(late) >= 10
    due = [pd.Timestamp(i["occurred_at"]).value + (1500 * 10**9 if k in late else 0)
           for k, i in enumerate(items)]  # fmt: skip
    order = sorted(range(len(items)), key=due.__getitem__)
    state = MemoryState(history_s=35 * 86_400, burst_s=2 * LONGEST_WINDOW_S)
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}")
    runtime = Runtime(settings, world["model"], world["enrichers"], state)
    runtime.recorder = recorder = ScoreRecorder(lambda: store, flush_s=0.05)
    answers = {}
    for lo in range(0, len(order), 20):
        sent = [items[k] for k in order[lo : lo + 20]]
        for item, answer in zip(sent, runtime.score(sent), strict=True):
            answers[(item["tenant_id"], item["event_id"])] = answer
    runtime.close()
    tenants = sorted(world["data"].messages["tenant_id"].unique())
    keys = ["tenant_id", "event_id"]
    api = store.load_scores(tenants, world["model"].model_id)
    recorded = set(zip(api["tenant_id"], api["event_id"], strict=True))
    assert recorder.recorded == len(recorded) > 0
    # The late events' answers read a trimmed history: some differ from the batch job's ...
    batch = score_context(
        event_context(world["data"].messages, world["data"].events),
        world["model"],
        world["enrichers"],
    ).set_index(["tenant_id", "event_id"])
    late_keys = {(items[k]["tenant_id"], items[k]["event_id"]) for k in late}
    off = {key for key in late_keys if answers[key]["bot_score"] != batch.loc[key, "bot_score"]}
    assert off
    # ... and none of them was recorded as final: what was recorded is the batch job's answer
    # (a late event whose tenant had sent nothing else meanwhile read its whole history).
    assert not recorded & off
    check = api.set_index(keys).join(batch, rsuffix="_batch")
    np.testing.assert_allclose(check["bot_score"], check["bot_score_batch"], rtol=0, atol=1e-9)

    result = run(world, store, settings, scorer=CountingScorer(world))
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    again = run(world, fresh, settings, scorer=CountingScorer(world))
    for name, table in again.tables.items():
        pd.testing.assert_frame_equal(result.tables[name], table, obj=name)
    used = store.load_scores(tenants, world["model"].model_id).sort_values(keys)
    alone = fresh.load_scores(tenants, world["model"].model_id).sort_values(keys)
    assert len(used) == len(alone) == len(items)
    np.testing.assert_allclose(used["bot_score"], alone["bot_score"], rtol=0, atol=1e-9)
    assert used["is_bot"].tolist() == alone["is_bot"].tolist()
