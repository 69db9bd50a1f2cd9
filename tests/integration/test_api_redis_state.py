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
    assert 3500 < a._redis.ttl(f"{prefix}log") <= 3600
    assert a._redis.keys(f"{prefix}*") == [f"{prefix}log".encode()]  # one key in all


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
        assert state._redis.xlen(f"{prefix}log") <= 51  # whole nodes of old entries trimmed
        assert 0 < state._redis.ttl(f"{prefix}log") <= 2
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
        state.lookup(["x"], [])


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
