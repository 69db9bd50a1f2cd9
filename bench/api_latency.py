"""Benchmark: the online API under load, in-process state and Redis-backed, from a second process.

    .venv/bin/python bench/api_latency.py                      # both modes, servers started here
    .venv/bin/python bench/api_latency.py --url http://127.0.0.1:3000 --token T   # a running one
    .venv/bin/python bench/api_latency.py --stages   # also CPU per scoring stage, in process
    .venv/bin/python bench/api_latency.py --stages-only   # only that: no server, no HTTP load
    .venv/bin/python bench/api_latency.py --floor    # also the client's own floor (see below)

For each mode (in-process state with 1 worker; Redis with 2 workers) it starts ``botfilter serve``
on a free loopback port and drives it with a small asyncio HTTP/1.1 client over keep-alive
connections, with a bounded count and time per phase:

* 1-event requests sent open-loop at a fixed rate (default 200/s): p50/p90/p99/max latency, from
  the moment each request was due (so queueing in the server counts);
* 100- and 1,000-event requests, closed loop with a few in flight: events/s and latency.

With ``--floor`` the 1-event phase is also run against a server that answers at once: on a shared
machine that is the part of the latencies due to the client and the machine, not the API.

Events are a simulated world sent in (occurred_at, event_id) order, as an ingestion pipeline sees
them; each run uses fresh event ids, so nothing is answered from the duplicate store. Peak memory
is the server's largest worker (VmHWM) and this client's ru_maxrss. The model is the champion of
``--home`` (trained there on a small simulated world when it has none).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from _machine import machine_speed  # a sibling module: bench/ is first on sys.path

BOTFILTER = str(Path(sys.executable).with_name("botfilter"))
MODEL_NAME = "botfilter_bench"


# --- a minimal keep-alive HTTP/1.1 client (httpx would cost the client more CPU than the server)
class Connection:
    """One keep-alive connection; requests on it are sequential."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> Connection:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        await self.connect()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"{self.auth}Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        assert self.reader is not None
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection":
                close = value.strip().lower() == "close"
        payload = await self.reader.readexactly(length)
        if close:  # the server recycles the connection: the next request opens a new one
            self.writer.close()
            self.reader = self.writer = None
        return status, payload


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    requests: int
    events: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    offsets_s: list[float]  # when each request was due (or sent), from the phase's start
    cpu_s: dict[str, float] | None = None  # CPU seconds per server process during the phase

    def line(self) -> str:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

        return (
            f"{self.name:<22} {self.requests:>6} req {self.events:>7} ev in {self.seconds:6.1f} s"
            f" | {self.events / self.seconds:>8.0f} ev/s {self.requests / self.seconds:>6.1f} req/s"
            f" | p50 {pct(0.5):7.1f} p90 {pct(0.9):7.1f} p99 {pct(0.99):7.1f}"
            f" max {lat[-1] if lat else float('nan'):7.1f} ms | errors {self.errors}"
            + (
                " | cpu s: " + ", ".join(f"{k} {v:.1f}" for k, v in self.cpu_s.items())
                if self.cpu_s
                else ""
            )
        )


class Stream:
    """Events in time order with fresh ids, handed out in slices.

    When the simulated world runs out it starts again as new traffic: every lap moves all
    timestamps past the previous lap (plus a day, beyond every window) and renames messages
    and campaigns. Replaying the same weeks would pile each lap's events onto the same messages
    and windows, which no ingestion stream does and which makes every request carry more
    history than real traffic.
    """

    def __init__(self, items: list[dict], tag: str) -> None:
        self.items, self.tag, self.pos = items, tag, 0
        self._laps: dict[int, list[dict]] = {0: items}
        self._period = timedelta(0)
        if items:
            first = datetime.fromisoformat(items[0]["sent_at"])
            last = datetime.fromisoformat(items[-1]["occurred_at"])
            self._period = last - first + timedelta(days=1)

    def _lap(self, lap: int) -> list[dict]:
        if lap not in self._laps:
            shift = self._period * lap
            moved = []
            for it in self.items:
                it = dict(it)
                for key in ("occurred_at", "sent_at", "delivered_at"):
                    if it.get(key):
                        it[key] = (datetime.fromisoformat(it[key]) + shift).isoformat()
                for key in ("message_id", "campaign_id"):
                    if it.get(key):
                        it[key] = f"{it[key]}-lap{lap}"
                moved.append(it)
            self._laps = {lap: moved}  # one lap at a time: the stream only moves forward
        return self._laps[lap]

    def take(self, n: int) -> list[dict]:
        out = []
        for _ in range(n):
            lap, at = divmod(self.pos, len(self.items))
            it = self._lap(lap)[at]
            out.append({**it, "event_id": f"{it['event_id']}-{self.tag}-{lap}"})
            self.pos += 1
        return out


def quiet_gc() -> None:
    """Keep this client's own garbage collections out of the timed phase: it holds the whole
    stream (millions of objects), and a full collection of it paused the client 220-290 ms
    (gc.callbacks; seen as a one-off 290 ms ramp in a 1-event phase that no server caused)."""
    gc.collect()
    gc.freeze()


async def connect_all(conns: list[Connection], stagger_s: float = 0.02) -> None:
    """Open every connection before a phase's clock starts: an ingestion pipeline keeps its
    connections open, so a TCP handshake is not part of a request's latency.

    They open ``stagger_s`` apart, as a client pool grows with its load. The workers share one
    listening socket: connections that arrive in the same instant are all accepted by the one
    worker that wakes first (measured: 4 at once -> 4 on one worker, the other idle, Redis
    1,000-event throughput 8-17k events/s instead of 22k), while ones a few ms apart spread.
    The CPU per worker printed with each phase shows how they spread."""
    for conn in conns:
        await conn.connect()
        await asyncio.sleep(stagger_s)


async def fixed_rate(
    conns: list[Connection], stream: Stream, rate: float, seconds: float, name: str
) -> Phase:
    """1-event requests due every 1/rate s, each on a free connection (open loop)."""
    n = int(rate * seconds)
    bodies = [orjson.dumps(stream.take(1)) for _ in range(n)]
    quiet_gc()
    await connect_all(conns)
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()

    async def one(i: int, due: float) -> None:
        nonlocal errors
        conn = await free.get()
        try:
            status, _ = await conn.post("/score", bodies[i])
        finally:
            free.put_nowait(conn)
        latencies.append((time.perf_counter() - due) * 1e3)
        offsets.append(due - start)
        errors += status != 200

    offsets: list[float] = []
    # Each request's task is created when it is due: thousands of tasks created up front, each
    # asleep until its time, kept the client's loop busy for tens of ms at the phase's start.
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return Phase(name, n, n, time.perf_counter() - start, latencies, errors, offsets)


async def closed_loop(
    conns: list[Connection], stream: Stream, size: int, requests: int, max_s: float, name: str
) -> Phase:
    """``size``-event requests, one in flight per connection, until ``requests`` or ``max_s``.

    Bodies are built before the clock starts, as for the 1-event phase: the client shares the
    machine's cores with the server, and its JSON encoding is not the API's cost."""
    bodies = [orjson.dumps(stream.take(size)) for _ in range(requests)]
    bodies.reverse()
    quiet_gc()
    await connect_all(conns)
    latencies: list[float] = []
    offsets: list[float] = []
    errors = 0
    start = time.perf_counter()

    async def worker(conn: Connection) -> None:
        nonlocal errors
        while bodies and time.perf_counter() - start < max_s:
            body = bodies.pop()
            t = time.perf_counter()
            status, _ = await conn.post("/score", body)
            latencies.append((time.perf_counter() - t) * 1e3)
            offsets.append(t - start)
            errors += status != 200

    await asyncio.gather(*(worker(c) for c in conns))
    done = len(latencies)
    return Phase(name, done, done * size, time.perf_counter() - start, latencies, errors, offsets)


async def drive(
    url: str,
    token: str | None,
    stream: Stream,
    args: argparse.Namespace,
    processes: dict[str, int] | None = None,
) -> list:
    """Warm up, then the three phases; ``processes`` (name -> pid) get their CPU per phase."""
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    mk = lambda n: [Connection(host, int(port), token) for _ in range(n)]  # noqa: E731
    warm = mk(2)
    for _ in range(20):  # warm-up: first calls compile and fill caches
        await warm[0].post("/score", orjson.dumps(stream.take(5)))
    phases = []
    for run in (
        lambda: fixed_rate(mk(16), stream, args.rate, args.seconds, f"1 event @ {args.rate:g}/s"),
        lambda: closed_loop(
            mk(args.concurrency), stream, 100, 300, args.seconds, "100 events/request"
        ),
        lambda: closed_loop(
            mk(args.concurrency), stream, 1000, 60, args.seconds, "1000 events/request"
        ),
    ):
        before = cpu_seconds(processes or {})
        phase = await run()
        after = cpu_seconds(processes or {})
        # How the work spread over the workers (the kernel picks a worker per connection).
        phase.cpu_s = {k: after[k] - before[k] for k in after if k in before} or None
        phases.append(phase)
    return phases


def cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds so far of each named process (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def server_processes(proc: subprocess.Popen, with_redis: bool) -> dict[str, int]:
    """The API's worker processes (and the local redis-server), by a short name."""
    workers = [
        pid
        for pid in descendants(proc.pid)
        if "worker.service" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]
    named = {f"worker{i + 1}": pid for i, pid in enumerate(sorted(workers))}
    if with_redis:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if Path(f"/proc/{entry}/comm").read_text().strip() == "redis-server":
                        named["redis"] = int(entry)
                except OSError:
                    pass
    return named


# --- servers ----------------------------------------------------------------------------------
# The floor: the same client against a server that answers at once (uvicorn, as the API's
# workers), so the client's and the machine's own share of the latencies can be told apart.
_FLOOR_APP = """
import sys, uvicorn
ANSWER = b'[{"event_id":"e","bot_score":0.5,"is_bot":false,"reasons":[],"model_version":"v"}]'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_level="warning")
"""


def floor_phase(stream: Stream, args: argparse.Namespace) -> Phase:
    """1-event requests at the benchmark's rate against the floor server."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _FLOOR_APP, str(port)], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("floor server did not start") from None
                time.sleep(0.1)
        conns = [Connection("127.0.0.1", port, None) for _ in range(16)]
        name = f"floor @ {args.rate:g}/s"
        return asyncio.run(fixed_rate(conns, stream, args.rate, args.seconds, name))
    finally:
        stop_server(proc)


def save_timeline(phases: list[Phase], stem: Path) -> str:
    """Every request's latency by when it was due, as CSV and a plot: tails that cluster in
    time (a pause) look different from tails spread evenly (queueing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(stem.with_suffix(".csv"), "w") as fh:
        fh.write("phase,offset_s,latency_ms\n")
        for p in phases:
            fh.writelines(
                f"{p.name},{o:.6f},{lat:.3f}\n"
                for o, lat in zip(p.offsets_s, p.latencies_ms, strict=True)
            )
    fig, axes = plt.subplots(len(phases), 1, figsize=(9, 2.4 * len(phases)), squeeze=False)
    for ax, p in zip(axes[:, 0], phases, strict=True):
        ax.plot(p.offsets_s, p.latencies_ms, ".", ms=2)
        ax.set_yscale("log")
        ax.set_title(p.name, fontsize=9)
        ax.set_ylabel("latency (ms)")
    axes[-1, 0].set_xlabel("seconds into the phase")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=90)
    plt.close(fig)
    return f"{stem}.csv, {stem}.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def peak_rss_mb(pids: list[int]) -> float:
    """Largest VmHWM among ``pids``, in MiB."""
    best = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return best


def start_server(env: dict[str, str], workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = ["serve", "--port", str(port), "--workers", str(workers), "--no-access-log"]
    proc = subprocess.Popen(
        [BOTFILTER, *args],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"server not ready after 300 s; see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def ensure_champion(env: dict[str, str], out: Path) -> None:
    """Train and register a champion in the bench home unless it has one."""
    from core.errors import BotfilterError
    from core.settings import Settings
    from scoring.registry import champion_uri, configure_mlflow, resolve_version

    settings = Settings(home=Path(env["BOTFILTER_HOME"]), model_name=MODEL_NAME)
    configure_mlflow(settings)
    try:
        resolve_version(settings, champion_uri(settings))
        return
    except BotfilterError:
        pass
    train_dir = out / "train-world"
    print("training a champion for the benchmark (once)...", flush=True)
    for args in (
        ["simulate", "--out", str(train_dir), "--tenants", "1", "--days", "3", "--seed", "1"],
        ["train", "--data", str(train_dir)],
    ):
        subprocess.run([BOTFILTER, *args], env=env, check=True, capture_output=True)


def load_stream(out: Path, tenants: int, days: int) -> list[dict]:
    from contract import load
    from serving.client import api_events
    from simulation import simulate

    world = out / f"stream-{tenants}x{days}"
    if not (world / "events.parquet").exists():
        simulate(world, tenants=tenants, days=days, seed=2)
    v = load(world)
    return api_events(v.messages, v.events)


def stage_summary(url: str) -> str:
    """Mean time per scoring stage and mean events per scoring call, from the server's /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from serving.prometheus import BATCH, STAGES

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            label = sample.labels.get("stage", "batch")
            if sample.name in (f"{STAGES}_sum", f"{BATCH}_sum"):
                sums[label] = sums.get(label, 0.0) + sample.value
            elif sample.name in (f"{STAGES}_count", f"{BATCH}_count"):
                counts[label] = counts.get(label, 0.0) + sample.value
    calls = counts.get("batch", 0.0)
    if not calls:
        return "no scoring calls recorded"
    stages = ", ".join(
        f"{k} {sums[k] / calls * 1e3:.1f}" for k in sums if k != "batch" and counts.get(k)
    )
    return (
        f"{calls:.0f} scoring calls, {sums['batch'] / calls:.1f} events per call;"
        f" ms per call: {stages}"
    )


def stage_cpu(items: list[dict], env: dict[str, str], mode: str, redis_url: str) -> None:
    """CPU per scoring stage in this process (no HTTP): where a call's time goes."""
    import gc
    import statistics

    import serving.scorer as scorer_module
    from core.settings import Settings
    from features.pipeline import Enrichers
    from scoring.registry import load_model
    from serving.scorer import OnlineScorer
    from serving.state import MemoryState, RedisState

    model = load_model(Settings(home=Path(env["BOTFILTER_HOME"]), model_name=MODEL_NAME))
    if mode == "redis":
        state = RedisState(redis_url, 35 * 86_400, 1_200, f"botfilter:{MODEL_NAME}:stages:")
        state.delete_all()
    else:
        state = MemoryState(35 * 86_400, 1_200)
    scorer = OnlineScorer(state, Enrichers.load())
    gc.collect()
    gc.freeze()
    stream = Stream(items, uuid.uuid4().hex[:6])
    scorer.score(stream.take(300), model)  # warm-up
    clock = scorer_module.time.perf_counter
    scorer_module.time.perf_counter = time.thread_time  # stages in CPU time, this thread
    try:
        print(f"\n== CPU per scoring call in process, {mode} state (ms, median of calls)")
        for size, calls in ((1, 300), (100, 30), (1000, 12)):
            per_stage: dict[str, list[float]] = {}
            totals, history = [], []
            for _ in range(calls):
                t = time.thread_time()
                out = scorer.score(stream.take(size), model)
                totals.append(time.thread_time() - t)
                history.append(out.history_rows)
                for stage, sec in out.seconds.items():
                    per_stage.setdefault(stage, []).append(sec)
            total = statistics.median(totals)
            stages = ", ".join(
                f"{k} {statistics.median(v) * 1e3:.1f}" for k, v in per_stage.items()
            )
            print(
                f"{size:>5} events (+{statistics.median(history):.0f} history rows):"
                f" total {total * 1e3:.1f} ({size / total:,.0f} events/s per core) | {stages}"
            )
    finally:
        scorer_module.time.perf_counter = clock
        if mode == "redis":
            state.delete_all()


def clear_redis(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"botfilter:{MODEL_NAME}:*", count=1000))
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i : i + 1000])
    client.close()
    return len(keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="drive this running server instead of starting servers")
    ap.add_argument("--token", help="bearer token for --url")
    ap.add_argument("--modes", default="memory,redis", help="memory and/or redis")
    ap.add_argument(
        "--redis-workers", type=int, default=2, help="workers of the Redis-backed server"
    )
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--rate", type=float, default=200.0, help="1-event requests per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="time bound of each phase")
    ap.add_argument("--concurrency", type=int, default=4, help="batch requests in flight")
    ap.add_argument("--tenants", type=int, default=3, help="simulated world streamed")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--out", type=Path, default=Path("bench/out/api"))
    ap.add_argument(
        "--stages", action="store_true", help="also print CPU per scoring stage, in process"
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also run the 1-event phase against a server that answers at once (noise floor)",
    )
    ap.add_argument(
        "--stages-only",
        action="store_true",
        help="only the CPU per scoring stage, in process (no server, no HTTP load)",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    speed = machine_speed()
    items = load_stream(args.out, args.tenants, args.days)
    print(f"stream: {len(items):,} events ({args.tenants} tenants x {args.days} days)", flush=True)
    if args.url:
        stream = Stream(items, uuid.uuid4().hex[:6])
        for phase in asyncio.run(drive(args.url, args.token, stream, args)):
            print(phase.line())
        print(f"server stages: {stage_summary(args.url)}")
        print(
            f"client peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )
        return

    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOTFILTER_", "MLFLOW_"))}
    base.update(BOTFILTER_HOME=str((args.out / "home").resolve()), BOTFILTER_MODEL_NAME=MODEL_NAME)
    ensure_champion(base, args.out)
    if args.stages_only:
        for mode in args.modes.split(","):
            stage_cpu(items, base, mode, args.redis_url)
        return
    for mode in args.modes.split(","):
        env, workers = dict(base), 1
        if mode == "redis":
            env["BOTFILTER_REDIS_URL"] = args.redis_url
            workers = args.redis_workers
            clear_redis(args.redis_url)
        proc, url = start_server(env, workers, args.out / f"server-{mode}.log")
        try:
            stream = Stream(items, uuid.uuid4().hex[:6])
            processes = server_processes(proc, mode == "redis")
            phases = asyncio.run(drive(url, None, stream, args, processes))
            rss = peak_rss_mb([proc.pid, *descendants(proc.pid)])
            stages = stage_summary(url)
        finally:
            stop_server(proc)
            if mode == "redis":
                clear_redis(args.redis_url)
        print(f"\n== {mode} state, {workers} worker(s), {url}")
        for phase in phases:
            print(phase.line())
        print(f"latency timeline: {save_timeline(phases, args.out / f'latency-{mode}')}")
        print(f"server peak memory (largest process) {rss:.0f} MiB")
        print(f"server stages over all phases: {stages}")
    if args.floor:
        print(
            f"\n== floor: the same client, a server that answers at once\n"
            f"{floor_phase(Stream(items, uuid.uuid4().hex[:6]), args).line()}"
        )
    client = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"client peak memory {client:.0f} MiB; load average {os.getloadavg()[0]:.1f};"
        f" machine speed: {speed} at start, {machine_speed()} at end"
    )
    if args.stages:
        for mode in args.modes.split(","):
            stage_cpu(items, base, mode, args.redis_url)


if __name__ == "__main__":
    main()
