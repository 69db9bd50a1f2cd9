"""Window state in Redis: what every worker and replica shares."""

from __future__ import annotations

import time
import uuid

import pytest

from core.errors import BotfilterError
from serving.state import KeyRange, NewEvent, RedisState, StateUnavailable, make_state

pytestmark = [pytest.mark.integration, pytest.mark.redis]

S = 1_000_000_000
T0 = 1_800_000_000 * S


def ev(eid: str, t_s: float, msg: str = "m:1:t:a", bursts=("k:1:t:ip",), score=None) -> NewEvent:
    t = T0 + int(t_s * S)
    return NewEvent(eid, t, (eid, t), msg, bursts, score or {"event_id": eid, "t": t_s})


@pytest.fixture
def prefix() -> str:
    return f"bftest:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def states(redis_url: str, prefix: str):
    """Two workers' views of one shared state; only this test's keys are removed."""
    made = [RedisState(redis_url, 3600, 100, prefix), RedisState(redis_url, 3600, 100, prefix)]
    yield made
    made[0].delete_all()
    for s in made:
        s.close()


def test_workers_share_history_by_time_range(states) -> None:
    a, b = states
    a.put([ev("e3", 30), ev("e1", 10)])
    b.put([ev("e2", 20)])  # another worker, arriving late
    got = b.lookup([], [KeyRange("k:1:t:ip", T0 + 15 * S, T0 + 30 * S)])
    assert list(got.rows) == ["e2", "e3"]
    got = a.lookup(["e1", "e9"], [KeyRange("m:1:t:a", None, T0 + 20 * S)])
    assert list(got.rows) == ["e1", "e2"] and got.rows["e2"] == ("e2", T0 + 20 * S)
    assert got.scores == {"e1": {"event_id": "e1", "t": 10}}


def test_lookups_report_the_tenants_newest_time_other_workers_included(states) -> None:
    """The scorer does not take an answer as final when the event is more than the lateness
    behind its tenant's newest event (its history may have been trimmed): that newest time is
    the replica's, and counts what other workers logged."""
    a, b = states
    a.put([ev("e1", 10)])
    b.put([ev("e2", 500, msg="m:1:t:b", bursts=("k:1:t:other",))])  # another worker, later
    got = a.lookup([], [KeyRange("m:1:t:a")], {"t", "u"})
    assert got.newest == {"t": T0 + 500 * S} and list(got.rows) == ["e1"]
    # 500 - 100: the burst key kept nothing an event at 10 s needed.
    assert a.lookup([], [KeyRange("k:1:t:ip")]).rows == {}


def test_a_duplicate_gets_the_first_writers_answer_everywhere(states, redis_url, prefix) -> None:
    a, b = states
    assert a.put([ev("x", 1, score={"bot_score": 0.25})]) == {"x": {"bot_score": 0.25}}
    # The second worker scored it concurrently: it answers as the first one did.
    assert b.put([ev("x", 1, score={"bot_score": 0.75})]) == {"x": {"bot_score": 0.25}}
    late = RedisState(redis_url, 3600, 100, prefix)  # and a worker started afterwards
    for state in (a, b, late):
        got = state.lookup(["x"], [KeyRange("k:1:t:ip"), KeyRange("m:1:t:a")])
        assert list(got.rows) == ["x"] and got.scores == {"x": {"bot_score": 0.25}}
        assert state.put([ev("x", 1, score={"bot_score": 0.5})]) == {"x": {"bot_score": 0.25}}
    late.close()


def test_burst_keys_are_trimmed_and_everything_expires(states, redis_url, prefix) -> None:
    a, b = states
    a.put([ev("old", 0), ev("mid", 50)])
    b.put([ev("new", 120)])
    for state in (a, b):
        assert list(state.lookup([], [KeyRange("k:1:t:ip")]).rows) == ["mid", "new"]
        assert list(state.lookup([], [KeyRange("m:1:t:a")]).rows) == ["old", "mid", "new"]
    assert 3500 < a._redis.ttl(f"{prefix}log:1:t") <= 3600
    assert a._redis.keys(f"{prefix}*") == [f"{prefix}log:1:t".encode()]  # the tenant's log only


def test_a_new_worker_replays_the_log(states, redis_url, prefix) -> None:
    a, b = states
    a.put([ev(f"a{i}", i) for i in range(5)])
    b.put([ev("b0", 2.5, score={"reasons": ["x", "y"]})])
    assert a.catch_up() == 1 and a.catch_up() == 0  # b's event once; never its own
    late = RedisState(redis_url, 3600, 100, prefix)
    late.READ = 1  # one log entry per read: the replay pages through the log
    try:
        assert late.catch_up() == 6
        got = late.lookup(["b0"], [KeyRange("m:1:t:a", None, T0 + 3 * S)])
        assert list(got.rows) == ["a0", "a1", "a2", "b0", "a3"]  # up to 3 s, inclusive
        assert got.rows["a1"] == ("a1", T0 + 1 * S)
        assert got.scores == {"b0": {"reasons": ("x", "y")}}
    finally:
        late.close()


def test_the_log_keeps_only_the_history_window(redis_url, prefix) -> None:
    state = RedisState(redis_url, 2, 1, prefix)
    try:
        for i in range(150):  # one entry each: more than one node of the stream's radix tree
            state.put([ev(f"e{i}", i)])
        time.sleep(2.1)
        state.put([ev("last", 200)])
        assert state._redis.xlen(f"{prefix}log:1:t") <= 51  # whole nodes of old entries trimmed
        assert 0 < state._redis.ttl(f"{prefix}log:1:t") <= 2
    finally:
        state.delete_all()
        state.close()


def test_generation_is_shared(states) -> None:
    a, b = states
    assert a.generation() == 0
    assert b.bump_generation() == 1
    assert a.generation() == 1


def test_unreachable_redis_is_one_clear_error() -> None:
    with pytest.raises(BotfilterError, match="cannot reach Redis"):
        make_state("redis://127.0.0.1:1/0", 3600, 100, wait_s=0.2)
    state = RedisState("redis://127.0.0.1:1/0", 3600, 100)
    with pytest.raises(StateUnavailable, match="127.0.0.1:1"):
        state.lookup(["x"], [KeyRange("m:1:t:a")])


def test_a_write_whose_answer_was_lost_is_replayed(states, monkeypatch) -> None:
    """The script ran but the reply never came: the worker's own entry must reach its mirror."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    a, _ = states
    command = a._command

    def lost_reply(*args):
        command(*args)
        raise RedisConnectionError("connection reset")

    monkeypatch.setattr(a, "_command", lost_reply)
    with pytest.raises(StateUnavailable, match="connection reset"):
        a.put([ev("e1", 1)])
    monkeypatch.setattr(a, "_command", command)
    got = a.lookup(["e1"], [KeyRange("m:1:t:a")])
    assert list(got.rows) == ["e1"] and got.scores == {"e1": {"event_id": "e1", "t": 1}}
    assert a.put([ev("e1", 1, score={"other": 1})]) == {"e1": {"event_id": "e1", "t": 1}}


def _wait_for_events(state: RedisState, n: int, timeout_s: float = 5.0) -> None:
    """Until the state's replica holds ``n`` events (its follower's work), or the timeout."""
    deadline = time.monotonic() + timeout_s
    while state._mirror.size()["events"] < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_an_idle_worker_follows_the_log_in_the_background(states) -> None:
    a, b = states
    b.follow(0.01)
    a.put([ev(f"a{i}", i) for i in range(3)])
    _wait_for_events(b, 3)
    # Replayed without a request on b: its next lookup has nothing left to read.
    assert b._mirror.size()["events"] == 3 and b.catch_up() == 0
    b.close()
    assert not b._follower.is_alive()
    a.put([ev("after", 10)])
    time.sleep(0.05)
    assert b._mirror.size()["events"] == 3  # closed: it follows no more


def test_a_starting_worker_says_how_much_it_replayed(states, redis_url, prefix, caplog) -> None:
    a, _ = states
    a.put([ev(f"a{i}", i) for i in range(4)])
    with caplog.at_level("INFO", logger="botfilter.serving"):
        late = make_state(redis_url, 3600, 100, prefix)
    late.close()
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == [
        "replayed 4 logged events of the shared window state"
    ]


def test_the_follower_outlives_an_outage_and_warns_once(states, monkeypatch, caplog) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    a, b = states
    command = b._command
    down = True

    def flaky(*args):
        if down:
            raise RedisConnectionError("connection refused")
        return command(*args)

    monkeypatch.setattr(b, "_command", flaky)
    with caplog.at_level("WARNING", logger="botfilter.serving"):
        b.follow(0.01)
        time.sleep(0.1)  # several turns fail
        a.put([ev("e1", 1)])
        down = False
        _wait_for_events(b, 1)
    assert b._mirror.size()["events"] == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot follow the shared log: window state in Redis at {b.url}: connection refused"
    ]


# --- tenants are walls: one log per tenant -------------------------------------------------------
def scored(tenant: str, events: list[tuple[str, str, float]]) -> list[NewEvent]:
    """Events of ``tenant`` ((event id, message id, seconds)) as the scorer remembers them: its
    state ids and keys (``OnlineScorer._keys``, all from one /24 and ASN)."""
    from types import SimpleNamespace

    import numpy as np

    from features.pipeline import CONTEXT_COLUMNS
    from serving.scorer import OnlineScorer, state_id

    col = {name: i for i, name in enumerate(CONTEXT_COLUMNS)}
    rows = []
    for eid, message, t_s in events:
        row: list = [None] * len(CONTEXT_COLUMNS)
        row[col["event_id"]], row[col["tenant_id"]], row[col["message_id"]] = eid, tenant, message
        row[col["occurred_at"]] = T0 + int(t_s * S)
        rows.append(tuple(row))
    n = len(rows)
    ip = {
        "ip_version": np.full(n, 4),
        "prefix_key": np.array(["203.0.113"] * n, dtype=object),
        "asn": np.full(n, 64500.0),
    }
    keys = OnlineScorer._keys(SimpleNamespace(_tenant_keys={}), rows, ip)
    return [
        NewEvent(state_id(tenant, row[col["event_id"]]), t, row, mk, bursts, {"tenant": tenant})
        for row, (mk, bursts, t) in zip(rows, keys, strict=True)
    ]


# Ids that would collide in a key without the length: "a:b" and "a" with a message "b:...".
TENANTS = ("a", "a:b", "ünï:cödé")


def test_no_redis_key_holds_two_tenants_events(states, redis_url, prefix) -> None:
    import orjson

    from serving.state import _tenant_of

    a, b = states
    # One write of every tenant (a micro-batch merges requests), then each tenant on its own.
    a.put([e for t in TENANTS for e in scored(t, [("e1", "b:m", 1), ("e2", "m", 2)])])
    for t in TENANTS:
        b.put(scored(t, [("e3", "m", 3)]))
        b.put(scored(t, [("e1", "b:m", 1)]))  # a duplicate: logged again, answered as first
    seen: dict[str, int] = {}
    for name in a._redis.scan_iter(match=f"{prefix}*"):
        assert a._redis.type(name) == b"stream", name
        events = [e for _, fields in a._redis.xrange(name) for e in orjson.loads(fields[b"v"])]
        owners = {_tenant_of(e[3]) for e in events}  # message keys
        owners |= {_tenant_of(k) for e in events for k in e[4]}  # burst keys
        owners |= {_tenant_of(f"m:{e[0]}") for e in events}  # state ids (tenant first, alike)
        owners |= {e[5]["tenant"] for e in events}  # the tenant each was scored for
        assert len(owners) == 1, (name, owners)
        (tenant,) = owners
        assert name.decode() == f"{prefix}log:{len(tenant)}:{tenant}"
        seen[tenant] = len(events)
    assert seen == {t: 4 for t in TENANTS}
    # Each tenant's duplicate got its own first answer, never another tenant's.
    for state in (a, b):
        got = state.lookup([], [KeyRange(f"m:{len(t)}:{t}:b:m") for t in TENANTS])
        assert sorted(got.rows) == sorted(f"{len(t)}:{t}:e1" for t in TENANTS)


def _counting(state: RedisState, monkeypatch) -> list[tuple]:
    """The commands ``state`` sends on its connection from now on."""
    sent: list[tuple] = []
    command = state._command

    def counted(*args):
        sent.append(args)
        return command(*args)

    monkeypatch.setattr(state, "_command", counted)
    return sent


def test_a_request_replays_only_its_own_tenants_log(states, monkeypatch) -> None:
    """Worker a logs 5,000 events of tenant A; tenant B's request on worker b reads B's log only
    (one XREAD, one script, as before), and replays none of A's events."""
    a, b = states
    flood = scored("A", [(f"f{i}", f"m{i % 50}", i / 100) for i in range(5_000)])
    a.put(flood)
    b.put(scored("B", [("e0", "m", 0)]))
    assert b._mirror.size()["events"] == 1
    sent = _counting(b, monkeypatch)
    mine = scored("B", [("e1", "m", 1)])
    found = b.lookup([mine[0][0]], [KeyRange(mine[0][3]), KeyRange(mine[0][4][0])])
    assert list(found.rows) == ["1:B:e0"]
    b.put(mine)
    assert [args[0] for args in sent] == ["XREAD", "EVALSHA"]
    xread, script = sent  # XREAD COUNT n STREAMS <B's log> <last read>; EVALSHA sha 1 <B's log>
    assert len(xread) == 6 and xread[4] == b.log_key("B").encode()
    assert script[2:4] == (1, b.log_key("B"))
    assert b._mirror.size()["events"] == 2  # B's two events: not one of A's 5,000
    assert sorted(b._read_to) == ["B"]


def test_a_new_worker_finds_every_tenants_log_and_starts_warm(states, redis_url, prefix) -> None:
    a, b = states
    for i, t in enumerate(TENANTS):
        (a if i % 2 else b).put(scored(t, [(f"e{j}", "m", j) for j in range(i + 1)]))
    late = RedisState(redis_url, 3600, 100, prefix)
    late.STREAMS = 2  # two logs per read: the replay pages through the tenants too
    try:
        assert late.catch_up() == 1 + 2 + 3 and late.catch_up() == 0
        assert sorted(late._read_to) == sorted(TENANTS)
        assert late._mirror.size()["events"] == 6
    finally:
        late.close()
    assert a.delete_all() == 3 and a._redis.keys(f"{prefix}*") == []


def test_the_follower_finds_new_tenants_and_forgets_expired_logs(states) -> None:
    a, b = states
    b.FOLLOW_READ = 1  # one entry per log per read: it pages through the logs
    b.follow(0.01)
    a.put(scored("A", [("e1", "m", 1)]))
    _wait_for_events(b, 1)
    a.put(scored("B", [("e1", "m", 1)]))  # a tenant b has not read yet
    a.put(scored("B", [("e2", "m", 2)]))
    _wait_for_events(b, 3)
    assert b._mirror.size()["events"] == 3 and sorted(b._read_to) == ["A", "B"]
    a._redis.unlink(a.log_key("A"))  # as if it expired
    deadline = time.monotonic() + 5
    while "A" in b._read_to and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(b._read_to) == ["B"]  # not read again on every turn


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own on a free port, which the test may stop and start."""
    import shutil
    import socket
    import subprocess

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--requirepass", "s3cr3t-pw", "--dir", str(tmp_path)]

    class Server:
        url = f"redis://127.0.0.1:{port}/0?password=s3cr3t-pw"
        proc: subprocess.Popen | None = None

        def start(self) -> None:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
            import redis

            client = redis.Redis.from_url(self.url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    assert time.monotonic() < deadline, "private redis-server did not start"
                    time.sleep(0.05)
            client.close()

        def stop(self) -> None:
            assert self.proc is not None
            self.proc.terminate()
            self.proc.wait(10)

    server = Server()
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


def test_readiness_follows_redis_going_down_and_coming_back(private_redis) -> None:
    state = RedisState(private_redis.url, 3600, 100, "bftest:ready:")
    assert state.unready() is None
    private_redis.stop()
    why = state.unready()
    assert why is not None and "s3cr3t-pw" not in why and "password=***" in why
    with pytest.raises(StateUnavailable) as caught:
        state.lookup(["x"], [KeyRange("m:1:t:a")])
    assert "s3cr3t-pw" not in str(caught.value)
    private_redis.start()
    assert state.unready() is None
    state.close()


def test_a_wrong_redis_password_is_one_line_without_it(private_redis) -> None:
    url = private_redis.url.replace("s3cr3t-pw", "not-the-pw")
    with pytest.raises(BotfilterError) as caught:
        make_state(url, 3600, 100, wait_s=0.3)
    message = str(caught.value)
    assert message.startswith("cannot reach Redis: ") and "\n" not in message
    assert "not-the-pw" not in message and "s3cr3t-pw" not in message
