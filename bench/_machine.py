"""The machine's speed, printed beside benchmark figures (shared by the bench scripts)."""

from __future__ import annotations

import time


def machine_speed() -> str:
    """A fixed pure-Python loop's time (median of 5): this machine's speed drifts by tens of
    percent within minutes, so runs are compared with it alongside."""
    import statistics

    times = []
    for _ in range(5):
        t = time.perf_counter()
        sum(range(2_000_000))
        times.append(time.perf_counter() - t)
    return f"reference loop {statistics.median(times) * 1e3:.1f} ms"
