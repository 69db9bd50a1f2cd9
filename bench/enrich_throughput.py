"""Throughput of the offline enrichment: IPs/s and User-Agents/s, plus peak memory.

Cases: (a) 1M IPs with ~100k distinct (realistic traffic repeats addresses), (b) 1M all-distinct
IPs, (c) 1M User-Agents with 5k distinct, cold cache (first parse) and warm cache.
Addresses are drawn from the vendored ASN ranges so that lookups hit real data; ~10 % IPv6.

    .venv/bin/python bench/enrich_throughput.py [--rows N]
"""

from __future__ import annotations

import argparse
import re
import resource
import time

import numpy as np
import pandas as pd

from features.enrichment.ip import IpEnricher
from features.enrichment.reference import Reference, load_reference
from features.enrichment.useragent import UaParser


def sample_ips(ref: Reference, n: int, rng: np.random.Generator, v6_share: float = 0.1) -> list:
    """n distinct-ish addresses inside the vendored ranges, as strings."""
    n6 = int(n * v6_share)
    i4 = rng.integers(0, ref.ipv4_start.size, n - n6)
    span = (ref.ipv4_end[i4].astype(np.int64) - ref.ipv4_start[i4]) + 1
    v4 = ref.ipv4_start[i4].astype(np.int64) + (rng.random(n - n6) * span).astype(np.int64)
    octets = [(v4 >> s) & 255 for s in (24, 16, 8, 0)]
    text4 = pd.Series(octets[0].astype(str))
    for o in octets[1:]:
        text4 = text4 + "." + pd.Series(o.astype(str))
    i6 = rng.integers(0, ref.ipv6_start_hi.size, n6)
    hi = ref.ipv6_start_hi[i6]
    lo = rng.integers(0, 2**63, n6, dtype=np.uint64)
    text6 = [
        f"{h >> 48:x}:{(h >> 32) & 0xFFFF:x}:{(h >> 16) & 0xFFFF:x}:{h & 0xFFFF:x}:"
        f"{lo_ >> 48:x}:{(lo_ >> 32) & 0xFFFF:x}:{(lo_ >> 16) & 0xFFFF:x}:{lo_ & 0xFFFF:x}"
        for h, lo_ in zip(hi.tolist(), lo.tolist(), strict=True)
    ]
    return text4.tolist() + text6


def timed(label: str, n: int, fn) -> float:  # noqa: ANN001 - any callable
    """Run fn once; print wall and CPU seconds (CPU time is what a busy shared box distorts
    least) and rows/s on the wall clock."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:52s} {wall:7.3f} s wall {cpu:7.3f} s cpu  {n / wall:12,.0f} rows/s")
    return wall


def main() -> None:
    """Run all cases and print rows/s and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n = args.rows
    rng = np.random.default_rng(args.seed)

    start = time.perf_counter()
    ref = load_reference()
    print(f"load_reference: {time.perf_counter() - start:.3f} s")
    start = time.perf_counter()
    ip = IpEnricher(ref)
    print(f"IpEnricher init: {time.perf_counter() - start:.3f} s")

    distinct = sample_ips(ref, n // 10, rng)
    realistic = pd.Series(np.asarray(distinct, dtype=object)[rng.integers(0, len(distinct), n)])
    all_distinct = pd.Series(sample_ips(ref, n, rng), dtype=object)
    asn_given = pd.Series(np.where(rng.random(n) < 0.3, 15169, np.nan))
    timed(f"IP (a) {n:,} rows, {realistic.nunique():,} distinct", n, lambda: ip.enrich(realistic))
    timed("IP (a) same, 30 % with a given asn", n, lambda: ip.enrich(realistic, asn_given))
    timed(
        f"IP (b) {n:,} rows, {all_distinct.nunique():,} distinct",
        n,
        lambda: ip.enrich(all_distinct),
    )

    start = time.perf_counter()
    ua = UaParser(ref)
    print(f"UaParser init: {time.perf_counter() - start:.3f} s")
    real = ref.user_agents["user_agent"].unique()
    # 5k distinct: real browser UAs plus the same browsers a few majors older (a long tail).
    version = re.compile(r"(Chrome|CriOS|Firefox|FxiOS|Edg|OPR|SamsungBrowser|Version)/(\d+)")
    variants = [
        version.sub(lambda m, k=k: f"{m[1]}/{max(int(m[2]) - k, 1)}", u)
        for k in range(8)
        for u in real
    ]
    pool = np.asarray(list(dict.fromkeys(variants))[:5000], dtype=object)
    uas = pd.Series(pool[rng.integers(0, len(pool), n)])
    cold = timed(f"UA {n:,} rows, {uas.nunique():,} distinct, cold cache", n, lambda: ua.parse(uas))
    # The pipeline parses each distinct UA once: the cost per distinct UA is what scales.
    print(
        f"UA cost per distinct UA (cold, incl. the row mapping): {cold / uas.nunique() * 1e6:.0f} us"
    )
    timed(f"UA {n:,} rows, {uas.nunique():,} distinct, warm cache", n, lambda: ua.parse(uas))

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (ru_maxrss): {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
