"""Benchmark: enrichment + features + scoring throughput on ~1M simulated events.

    .venv/bin/python bench/score_throughput.py [--events 1000000] [--threads 2]

Prints events/s per stage and end to end, and peak memory. The model is trained on a separate,
smaller simulated world (no MLflow needed) and compiled with lleaves as in production scoring.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="approximate events to score")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument(
        "--repeat", type=int, default=3, help="end-to-end runs; the median and best are printed"
    )
    args = ap.parse_args()

    from contract import load
    from core.settings import Settings
    from features.pipeline import Enrichers, build_features, event_context
    from scoring.batch import score_context
    from simulation import simulate
    from training.fit import fit_model, prepare
    from training.kind import fit_kind

    settings = Settings(home=args.out / "home", threads=args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train_dir, big_dir = args.out / "train-world", args.out / f"world-{args.events}"
    if not (train_dir / "events.parquet").exists():
        simulate(train_dir, tenants=2, days=10, seed=101)
    if not (big_dir / "events.parquet").exists():
        # one pass sized from a small sample; the frame is cut to --events rows below
        sample = simulate(args.out / "sample-world", tenants=2, days=30, seed=202)
        tenants = max(2, int(np.ceil(2 * 1.15 * args.events / max(sample.events, 1))))
        simulate(big_dir, tenants=tenants, days=30, seed=202, progress=True)

    enrichers = Enrichers.load()
    prep = prepare(load(train_dir), enrichers)
    model, _ = fit_model(prep, settings)
    model.kind = fit_kind(prep, settings)  # bot_kind of flagged events, as a trained model has
    model.version = "bench"
    with tempfile.TemporaryDirectory() as tmp:
        model.compile(Path(tmp))
        compiled = model._compiled is not None and (
            model.kind is None or model.kind._compiled is not None
        )
        explained = model._explainer is not None

        t0 = time.perf_counter()
        validated = load(big_dir)
        t_load = time.perf_counter() - t0
        ctx = event_context(validated.messages, validated.events).iloc[: args.events]
        n = len(ctx)
        # warm the JIT kernels and parsers on a small slice so the timings are steady-state
        warm = ctx.iloc[:2000]
        model.score(
            warm["event_id"], warm["channel"], warm["type"], build_features(warm, enrichers)
        )

        t0 = time.perf_counter()
        enrichers.ip.enrich(ctx["ip"], ctx["asn"])
        enrichers.ua.parse(ctx["user_agent"])
        t_enrich = time.perf_counter() - t0
        t0 = time.perf_counter()
        feats = build_features(ctx, enrichers)
        t_feat = time.perf_counter() - t0
        X = model.matrix(feats)
        t0 = time.perf_counter()
        model.raw_score(X)
        t_model = time.perf_counter() - t0
        del X
        t0 = time.perf_counter()
        model.score(ctx["event_id"], ctx["channel"], ctx["type"], feats, with_reasons=False)
        t_noreason = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = model.score(ctx["event_id"], ctx["channel"], ctx["type"], feats, with_reasons=True)
        t_score = time.perf_counter() - t0
        # The kind head alone, on the flagged events (included in both score lines above).
        t_kind, bots = 0.0, np.flatnonzero(scores["is_bot"].to_numpy())
        if model.kind is not None:
            fmap = model.feature_map(list(feats.columns), model.kind.feature_names)
            block, channel = feats.to_numpy().T, ctx["channel"].to_numpy(dtype=object)
            t0 = time.perf_counter()
            model.kind.predict_block(block, fmap, bots, channel)
            t_kind = time.perf_counter() - t0
            del block
        # The whole path again in one go, as `botfilter score` runs it after loading: tenants
        # in parts, one part's features built while the previous part is scored.
        del feats
        totals = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            score_context(ctx, model, enrichers)
            totals.append(time.perf_counter() - t0)
        t_total, t_best = float(np.median(totals)), min(totals)

    print(
        f"events scored          {n:,}  (trees: {model.booster.num_trees()}, lleaves: {compiled}, "
        f"compiled reasons: {explained}, threads: {args.threads})"
    )
    print(f"load + validate        {t_load:6.2f} s  {n / t_load:12,.0f} events/s")
    print(f"enrichment (IP + UA)   {t_enrich:6.2f} s  {n / t_enrich:12,.0f} events/s")
    print(f"features (incl. enr.)  {t_feat:6.2f} s  {n / t_feat:12,.0f} events/s")
    print(f"model raw score only   {t_model:6.2f} s  {n / t_model:12,.0f} rows/s (lleaves)")
    print(f"score, no reasons      {t_noreason:6.2f} s  {n / t_noreason:12,.0f} events/s")
    print(f"score + reasons        {t_score:6.2f} s  {n / t_score:12,.0f} events/s")
    if t_kind:
        print(
            f"  of which kind head     {t_kind:6.2f} s  {len(bots) / t_kind:12,.0f} flagged events/s"
        )
    print(
        f"features + scoring     {t_total:6.2f} s  {n / t_total:12,.0f} events/s  "
        f"(enrichment + features + scores with reasons, after load; median of {len(totals)}, "
        f"best {n / t_best:,.0f})"
    )
    print(f"bots flagged           {scores['is_bot'].mean():.1%}")
    load = os.getloadavg()[0]
    print(f"load average (1 min)   {load:.1f} on {os.cpu_count()} cores (figures are wall-clock)")
    print(f"peak memory            {peak_mb():,.0f} MB")


if __name__ == "__main__":
    main()
