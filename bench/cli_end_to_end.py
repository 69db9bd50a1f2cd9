"""Benchmark: the real ``botfilter`` commands, end to end (process start to file written).

    .venv/bin/python bench/cli_end_to_end.py [--sizes 1m,2.65m] [--big 10m] [--repeat N]
    .venv/bin/python bench/cli_end_to_end.py --startup-only
    .venv/bin/python bench/cli_end_to_end.py --sizes 2.65m --big '' --commands score --against 9566961

Times, on simulated worlds of about 1M and 2.65M events, each command as a user runs it, in a
child process: ``botfilter score``, ``botfilter recompute`` (first run on an empty metrics store,
then a toggle run after ``settings set`` that reuses the stored scores), ``botfilter monitor``
(drift against the champion's training data) and ``botfilter validate``; with ``--big`` it also scores a larger file (10M events: copies of the 2.65M world
under other tenant ids). Prints wall time, events/s, CPU seconds (all processes of the run) and
the peak memory of the child including the processes it starts: the sum of their resident sets
(RSS, polled every 20 ms, or the kernel's high-water mark of the largest if higher), which
counts pages shared by forked workers once per worker, and the sum of their proportional sets
(PSS: shared pages split between the processes), the footprint. Also the start-up time of
commands that need no MLflow (median of repeated runs, as hyperfine would).

Memory and time come from separate runs of each command. Reading every process's PSS 50 times a
second walks its page tables under its memory-map lock, which slowed the command it measured
(`botfilter score` on 2.65M events: 13.0 s alone, 15.5 s while polled). So each command runs
first with the memory poller (that run also warms the caches: the file cache, and the compiled
model on a new champion's first score), then ``--runs`` times with only a cheap CPU-time poll; the
table shows the median of those.

``--against REF`` also runs each command from a git worktree of REF (same environment, same
data home and model), alternating with this checkout's runs, and prints both rows and their
ratio: the machine's speed varies from day to day by more than most changes move the figures
(the 2.65M score took 13.1 s one day and 21 s the next, same code), so a change is judged
against its base measured on the same machine in the same minutes.

Generated worlds, the trained model and the metrics store are cached under ``bench/out/``
(git-ignored); delete it to start over. The machine's load average is printed with every
figure: on a shared machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _machine import machine_speed  # a sibling module: bench/ is first on sys.path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
HOME = OUT / "home"
BOTFILTER = [str(Path(sys.executable).parent / "botfilter")]  # the console script users run
# tenants x 30 days of the default simulator profile (about 24k events per tenant)
WORLDS = {"1m": 42, "2.65m": 110}
TRAIN_TENANTS = 6
AS_OF = "2026-11-01T00:00:00Z"  # the simulator's default end: the whole 30-day window counts


@dataclass
class Run:
    """One timed command."""

    wall: float
    peak_mib: float
    pss_mib: float
    cpu: float
    stdout: str


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def _status_kib(pid: int, path: str, field: str) -> int:
    """One ``field:`` of /proc/PID/``path`` in KiB (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kib(pid: int) -> int:
    return _status_kib(pid, "status", "VmRSS:")


def _pss_kib(pid: int) -> int:
    return _status_kib(pid, "smaps_rollup", "Pss:")


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime of the process itself


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += _children(p)
    return found


def timed(
    args: list[str], env: dict[str, str] | None = None, check: bool = True, memory: bool = False
) -> Run:
    """Run ``args`` as a child; wall time from start to exit, CPU time of its tree and, with
    ``memory``, its tree's peak memory (else 0: see the module docstring)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        text=True,
    )
    streams: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda k=k, s=s: streams.__setitem__(k, s.read()), daemon=True)
        for k, s in (("out", child.stdout), ("err", child.stderr))
    ]
    for reader in readers:
        reader.start()
    peak = [0, 0]  # RSS summed over the tree; PSS (shared pages split between processes)
    ticks: dict[int, int] = {}  # last CPU ticks seen per process of the tree
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            tree = _tree(child.pid)
            if memory:
                peak[0] = max(peak[0], sum(_rss_kib(p) for p in tree))
                peak[1] = max(peak[1], sum(_pss_kib(p) for p in tree))
            for p in tree:
                ticks[p] = max(ticks.get(p, 0), _cpu_ticks(p))
            done.wait(0.02 if memory else 0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    # wait4 gives this child's own rusage: ru_maxrss is the high-water mark of the largest
    # process of its tree (which polling can miss between two samples).
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for thread in (poller, *readers):
        thread.join()
    if check and child.returncode != 0:
        tail = streams.get("err", "").strip()[-500:]
        sys.exit(f"{' '.join(args[1:])} failed ({child.returncode}): {tail}")
    # CPU: the child's own rusage; its descendants (a fork server's workers are not the
    # child's children) as last sampled.
    others = sum(t for p, t in ticks.items() if p != child.pid) / os.sysconf("SC_CLK_TCK")
    cpu = usage.ru_utime + usage.ru_stime + others
    rss = max(peak[0], usage.ru_maxrss) / 1024 if memory else 0.0
    return Run(wall, rss, peak[1] / 1024, cpu, streams.get("out", ""))


def combined(first: Run, timings: list[Run]) -> Run:
    """The median of ``timings`` (wall, and the CPU of that run) with the peak memory of
    ``first``, the run with the memory poller."""
    print(f"    (memory run: {first.wall:.1f} s)", flush=True)
    middle = sorted(timings, key=lambda r: r.wall)[(len(timings) - 1) // 2]
    return Run(middle.wall, first.peak_mib, first.pss_mib, middle.cpu, middle.stdout)


def measured(runs: int, run: Callable[[bool], Run]) -> Run:
    """``run`` once with the memory poller, then ``runs`` times without (:func:`combined`)."""
    return combined(run(True), [run(False) for _ in range(runs)])


def env() -> dict[str, str]:
    """The benchmark's own data home (model registry, metrics store), never the user's."""
    return {"BOTFILTER_HOME": str(HOME), "COLUMNS": "200"}


@dataclass(frozen=True)
class Variant:
    """Which code runs the commands: this checkout, or a worktree of another commit."""

    name: str  # "" for this checkout
    argv: tuple[str, ...]  # what stands for `botfilter`
    extra_env: tuple[tuple[str, str], ...] = ()

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv, *args]

    def env(self, more: dict[str, str] | None = None) -> dict[str, str]:
        return {**env(), **dict(self.extra_env), **(more or {})}


HEAD = Variant("", tuple(BOTFILTER))


def against(ref: str) -> Variant:
    """A variant running ``ref``'s code: a worktree of it under bench/out/against/, imported
    ahead of this checkout (PYTHONSAFEPATH keeps the working directory off ``sys.path``)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", f"{ref}^{{commit}}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if sha.returncode != 0:
        sys.exit(f"--against: not a commit: {ref}")
    short = sha.stdout.strip()
    tree = OUT / "against" / short
    if not (tree / "botfilter" / "cli.py").exists():
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), short],
            cwd=ROOT, capture_output=True, check=True,
        )  # fmt: skip
    run = "import sys; sys.argv[0] = 'botfilter'; from botfilter.cli import main; sys.exit(main())"
    compile_packages(tree)
    imports = (("PYTHONPATH", str(tree)), ("PYTHONSAFEPATH", "1"))
    return Variant(f"@{short}", (sys.executable, "-c", run), imports)


def compile_packages(tree: Path) -> None:
    """Bytecode for the packages of ``tree``, as an install has (`make venv` compiles this
    checkout's): where .pyc files are not written (PYTHONDONTWRITEBYTECODE, as on this machine),
    every timed process compiled them again, and a worktree of ``--against`` has none."""
    packages = [
        p.name
        for p in sorted(tree.iterdir())
        if (p / "__init__.py").is_file() and p.name not in {"tests", "bench"}
    ]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", *packages],
        cwd=tree, stdout=subprocess.DEVNULL, check=True,
    )  # fmt: skip


def world(name: str, tenants: int, seed: int = 7) -> Path:
    """A simulated world of ``tenants`` x 30 days, generated once and cached."""
    path = OUT / "worlds" / name
    if not (path / "events.parquet").exists():
        print(f"simulating {name}: {tenants} tenants x 30 days (cached in {path})", flush=True)
        cmd = ["simulate", "--out", str(path), "--tenants", str(tenants), "--days", "30"]
        timed([*BOTFILTER, *cmd, "--seed", str(seed)], env())
    return path


def copies(source: Path, name: str, times: int) -> Path:
    """``times`` copies of a world under other tenant ids, streamed into one set of files."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = OUT / "worlds" / name
    if (path / "events.parquet").exists():
        return path
    print(f"writing {name}: {times} copies of {source.name} under new tenant ids", flush=True)
    path.mkdir(parents=True, exist_ok=True)
    for table in ("messages", "events", "segments", "settings"):
        src = pq.ParquetFile(source / f"{table}.parquet")
        with pq.ParquetWriter(path / f"{table}.parquet", src.schema_arrow) as writer:
            for copy in range(times):
                for g in range(src.num_row_groups):
                    part = src.read_row_group(g)
                    i = part.schema.get_field_index("tenant_id")
                    tenant = pc.binary_join_element_wise(f"c{copy}-", part["tenant_id"], "")
                    writer.write_table(part.set_column(i, "tenant_id", tenant.cast(pa.string())))
    return path


def count_events(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path / "events.parquet").metadata.num_rows


def ensure_model() -> None:
    """A champion in the benchmark's registry, trained once on a small world."""
    marker = HOME / "bench-model-ready"
    if marker.exists():
        return
    data = world("train", TRAIN_TENANTS, seed=1)
    print("training the benchmark's champion (once)", flush=True)
    timed([*BOTFILTER, "train", "--data", str(data)], env())
    marker.write_text("ok\n")


def load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def startup(repeat: int) -> list[tuple[str, float, float]]:
    """Median and min wall time of commands that need no MLflow, each run ``repeat`` times."""
    small = world("train", TRAIN_TENANTS, seed=1)
    scratch = OUT / "scratch"
    cases = {
        "botfilter --help": ["--help"],
        "botfilter settings --help": ["settings", "--help"],
        "botfilter metrics show": ["metrics", "show", "--tenant", "nobody"],
        "botfilter validate --help": ["validate", "--help"],
        "botfilter score --help": ["score", "--help"],
    }
    rows = []
    for label, cmd in cases.items():
        # `metrics show` of an unknown tenant fails by design: its start-up is what counts
        timed([*BOTFILTER, *cmd], env(), check=False)  # warm the file cache
        walls = [timed([*BOTFILTER, *cmd], env(), check=False).wall for _ in range(repeat)]
        rows.append((label, statistics.median(walls), min(walls)))
    del small, scratch
    return rows


def bench_world(
    path: Path,
    label: str,
    commands: list[str],
    runs: int = 1,
    variants: tuple[Variant, ...] = (HEAD,),
) -> list[tuple[str, ...]]:
    """Time each command on one world (:func:`measured`: one memory run, then ``runs`` timed
    runs; with several ``variants``, their runs alternate); rows of (world, command, events,
    wall, events/s, CPU, MiB)."""
    n = count_events(path)
    scratch = OUT / "scratch" / label
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    rows: list[tuple[str, ...]] = []

    def row(command: str, run: Run) -> None:
        rows.append(
            (
                label,
                command,
                f"{n:,}",
                f"{run.wall:.1f}",
                f"{n / run.wall:,.0f}",
                f"{run.cpu:.1f}",
                f"{run.peak_mib:,.0f}",
                f"{run.pss_mib:,.0f}",
                load(),
            )  # fmt: skip
        )
        print("  ".join(rows[-1]), flush=True)

    def report(command: str, results: list[Run]) -> None:
        """One row per variant, then how this checkout compares with the others."""
        for v, result in zip(variants, results, strict=True):
            row(f"{command}{v.name}", result)
        if len(variants) > 1:
            _ratios(command, variants, results)

    def each(command: str, run: Callable[[Variant, bool], Run]) -> None:
        """``run`` for every variant: memory runs first, then the timed runs alternating."""
        firsts = [run(v, True) for v in variants]
        timings: list[list[Run]] = [[] for _ in variants]
        for r in range(runs):
            for i in _turns(len(variants), r):
                timings[i].append(run(variants[i], False))
        report(command, [combined(f, t) for f, t in zip(firsts, timings, strict=True)])

    if "score" in commands:
        out = scratch / "scores.parquet"
        each(
            "score",
            lambda v, mem: timed(
                v.cmd("score", "--data", str(path), "--out", str(out)), v.env(), memory=mem
            ),
        )
    if "recompute" in commands:
        import pyarrow.parquet as pq

        tenant = pq.read_table(path / "messages.parquet", columns=["tenant_id"])[0][0].as_py()
        # A first run and a toggle run on a fresh metrics store each time (the first run then
        # scores every event), the memory poller on the first pair only.
        pairs: list[list[tuple[Run, Run]]] = [[] for _ in variants]
        for i in range(1 + runs):
            for k in _turns(len(variants), i):
                v = variants[k]
                db = scratch / f"metrics-{i}-{k}.db"
                store = v.env({"BOTFILTER_DATABASE_URL": f"sqlite:///{db}"})
                cmd = v.cmd("recompute", "--data", str(path), "--as-of", AS_OF)
                fresh = timed(cmd, store, memory=i == 0)
                timed(v.cmd("settings", "set", "--tenant", tenant, "--email", "on"), store)
                pairs[k].append((fresh, timed(cmd, store, memory=i == 0)))
                db.unlink(missing_ok=True)
        for name, pick in (("recompute (first)", 0), ("recompute (toggle)", 1)):
            report(name, [combined(p[0][pick], [q[pick] for q in p[1:]]) for p in pairs])
    if "monitor" in commands:  # exits 1 on an alert, which is an answer, not a failure
        monitor_out = str(scratch / "monitor.json")  # not `report`: that is the row printer
        each(
            "monitor",
            lambda v, mem: timed(
                v.cmd("monitor", "--data", str(path), "--out", monitor_out),
                v.env(),
                check=False,
                memory=mem,
            ),  # fmt: skip
        )
    if "validate" in commands:
        each(
            "validate",
            lambda v, mem: timed(
                v.cmd("validate", "--data", str(path), "--out", str(scratch)), v.env(), memory=mem
            ),
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _turns(variants: int, round_: int) -> list[int]:
    """The order of the variants in one round: forward, then backward (A B, B A, A B ...).

    The machine drifts within minutes (the same `botfilter score` took 15 to 24 s within one
    hour of the seventeenth session): in a fixed order, a steady drift favours the variant that
    always runs second."""
    order = list(range(variants))
    return order if round_ % 2 == 0 else order[::-1]


def _ratios(command: str, variants: tuple[Variant, ...], results: list[Run]) -> None:
    """How this checkout compares with each other variant, measured in the same minutes."""
    head = results[0]
    for v, other in zip(variants[1:], results[1:], strict=True):
        print(
            f"    {command}: this checkout / {v.name[1:]}: wall {head.wall / other.wall:.3f}, "
            f"CPU {head.cpu / other.cpu:.3f} (below 1: faster)",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,2.65m", help=f"worlds among {', '.join(WORLDS)}")
    parser.add_argument("--big", default="10m", help="also score this many copies ('' to skip)")
    parser.add_argument("--commands", default="score,recompute,monitor,validate")
    parser.add_argument("--repeat", type=int, default=5, help="start-up runs per command")
    parser.add_argument(
        "--runs", type=int, default=1, help="timed runs per command after its memory run"
    )
    parser.add_argument("--startup-only", action="store_true")
    parser.add_argument(
        "--against",
        default="",
        metavar="REF",
        help="also run every command from a worktree of this commit, alternating, and compare",
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    HOME.mkdir(parents=True, exist_ok=True)
    compile_packages(ROOT)
    ensure_model()
    variants = (HEAD, against(args.against)) if args.against else (HEAD,)

    print(f"machine: {machine_speed()} (pure Python; 20-22 ms on the fastest machine seen here)")
    print(f"start-up (median / min of {args.repeat} runs), {load()}")
    for label, median, best in startup(args.repeat):
        print(f"  {label:<28} {median:.2f} s / {best:.2f} s")
    if args.startup_only:
        return 0

    commands = args.commands.split(",")
    header = (
        "world",
        "command",
        "events",
        "wall s",
        "events/s",
        "CPU s",
        "peak RSS MiB",
        "peak PSS MiB",
        "load",
    )
    print("  ".join(header))
    rows: list[tuple[str, ...]] = []
    for size in filter(None, args.sizes.split(",")):
        rows += bench_world(world(size, WORLDS[size]), size, commands, args.runs, variants)
    if args.big:
        times = round(float(args.big.rstrip("m")) / 2.65)
        big = copies(world("2.65m", WORLDS["2.65m"]), args.big, times)
        rows += bench_world(big, args.big, ["score"], args.runs, variants)
    print(f"machine at the end: {machine_speed()}")
    print("\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
