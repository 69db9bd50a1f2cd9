"""Stress suite: train on the default world, judge on worlds it never saw (issue 16).

    .venv/bin/python bench/quality_suite.py [--train-tenants 8] [--train-seeds 1,3,...]
        [--recall-slack 0] [--tenants 3] [--days 30] [--model URI] [--out bench/out/suite]
        [--json FILE] [--email-click-cut 0.9] [--seeds 3] [--validation] [--cuts 0.6,0.7,0.8]
        [--ceiling all]

Without --model, a model is fitted (no MLflow) as `botfilter train --data DIR --mix DIR ...`
fits it, on the suite's training recipe: twelve default worlds of 8 tenants x 30 days (seeds
TRAIN_SEEDS) mixed into one fit, with recall slack 0 (chosen on the validation worlds only;
docs/benchmarks.md). --train-seeds 1 fits on the README's single training world instead.
Each suite world (other seeds and profiles, training/suite.py) is simulated once under --out
and reused.
Prints, per world, the false-positive rate per family of people, precision and recall per
channel and channel x type, recall per bot family, the campaign CTR and open-rate error, and
which targets are missed; the exit status is 1 if any target is missed. With --seeds K each
world is run with K seeds and judged on its seeds pooled (a family of 30 people is then not
judged on one of them). --validation runs the validation worlds instead: the same profiles
with seeds the suite never uses, for choosing knobs without looking at the suite. --cuts judges
every world at each email-click cut (prepared once) and prints the frontier instead: the worst
family of people flagged and the worst CTR error per cut, saved as JSON and a plot.
--ceiling also fits on one world of each named suite profile (a seed no suite or validation
world uses): with the training in-distribution, where could these features reach? A diagnostic
only: a model fitted so has seen the very families the suite pushes, so it proves nothing there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# The suite's training worlds: twelve default worlds, none a suite or validation seed.
TRAIN_SEEDS = "1,3,4,5,6,7,8,9,10,16,17,18"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-tenants", type=int, default=8, help="tenants of the training world")
    ap.add_argument(
        "--train-seeds",
        default=TRAIN_SEEDS,
        help="seeds of the training worlds, comma-separated: several are mixed into one fit",
    )
    ap.add_argument(
        "--ceiling",
        default=None,
        help="also fit on one world of each of these suite profiles (comma-separated, or 'all'), "
        "with a seed no suite or validation world uses: how far the frontier is from "
        "in-distribution training (a ceiling to read, never a model to ship)",
    )
    ap.add_argument("--tenants", type=int, default=3, help="tenants of each suite world")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--model", default=None, help="model URI instead of fitting one")
    ap.add_argument("--out", type=Path, default=Path("bench/out/suite"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument(
        "--email-click-cut",
        type=float,
        default=None,
        help="judge with this email-click threshold instead of the fitted one (a what-if)",
    )
    ap.add_argument(
        "--recall-slack",
        type=float,
        default=0.0,
        help="fit the cuts with this recall slack (botfilter train uses training.fit.RECALL_SLACK)",
    )
    ap.add_argument("--seeds", type=int, default=1, help="seeds per world, judged pooled")
    ap.add_argument(
        "--cuts",
        default=None,
        help="also judge at these email-click cuts (comma-separated): the frontier, as a table, "
        "JSON and a plot under --out, instead of every world's tables",
    )
    ap.add_argument(
        "--validation",
        action="store_true",
        help="the validation worlds (for choosing knobs), not the suite's",
    )
    args = ap.parse_args()

    from rich.console import Console

    from core.settings import Settings, get_settings
    from scoring.registry import load_model
    from training.fit import RECALL_SLACK, fit_model, load_prepared
    from training.suite import (
        SUITE_WORLDS,
        parse_cuts,
        report_frontier,
        report_suite,
        run_suite,
        simulated,
        suite_frontier,
    )

    cuts = None if args.cuts is None else parse_cuts(args.cuts)
    ceiling = []
    if args.ceiling is not None and args.model:
        ap.error("--ceiling fits a model of its own; it does not go with --model")
    if args.ceiling is not None:
        wanted = {w.profile for w in SUITE_WORLDS} if args.ceiling == "all" else set()
        wanted |= {p for p in args.ceiling.split(",") if p and p != "all"}
        ceiling = [w for w in SUITE_WORLDS if w.profile in wanted]
        unknown = wanted - {w.profile for w in ceiling}
        if unknown or not ceiling:
            names = ", ".join(w.profile for w in SUITE_WORLDS)
            ap.error(
                f"--ceiling: {', '.join(sorted(unknown)) or 'no profile'}; choose from {names}"
            )
    console = Console()
    started = time.perf_counter()
    if args.model:
        model = load_model(get_settings(), args.model)
    else:
        trains = [int(x) for x in args.train_seeds.split(",")]
        days, tenants = args.days, args.train_tenants
        dirs = [
            simulated(
                args.out / f"train-default-seed{s}-{tenants}t-{days}d", "default", tenants, days, s
            )
            for s in trains
        ]
        dirs += [
            simulated(
                args.out / f"ceiling-{w.profile}-seed{w.ceiling_seed}-{args.tenants}t-{days}d",
                w.profile,
                args.tenants,
                days,
                w.ceiling_seed,
            )  # fmt: skip
            for w in ceiling
        ]
        prep = load_prepared(dirs[0], mix=dirs[1:])  # as `botfilter train --mix` mixes them
        settings = Settings(home=args.out / "home")
        with console.status("fitting the model on the training world"):
            slack = RECALL_SLACK if args.recall_slack is None else args.recall_slack
            model, info = fit_model(prep, settings, recall_slack=slack)
        model.version = "suite"
        console.print(f"fitted on {[str(d) for d in dirs]}: thresholds {model.thresholds}")
        for key, how in info.thresholds_how.items():
            console.print(f"  {key}: {how['cut']:.4f} ({how['method']})")
    if args.email_click_cut is not None:
        model.thresholds = {**model.thresholds, "email:click": args.email_click_cut}
        console.print(f"what-if: email-click threshold {args.email_click_cut}")
    if cuts is not None:
        points = suite_frontier(
            model,
            args.out,
            cuts,
            args.tenants,
            args.days,
            console=console,
            seeds=args.seeds,
            validation=args.validation,
        )
        which = "validation" if args.validation else "suite"
        out = args.json or args.out / f"frontier-{which}.json"
        more = f" + ceiling {','.join(w.profile for w in ceiling)}" if ceiling else ""
        title = (
            f"training seeds {args.train_seeds}{more}: {which} worlds, {args.seeds} seed(s) each"
        )
        missed = report_frontier(points, console, out, title)
    else:
        results = run_suite(
            model,
            args.out,
            args.tenants,
            args.days,
            console=console,
            seeds=args.seeds,
            validation=args.validation,
        )
        missed = report_suite(results, console, args.json)
    console.print(f"{time.perf_counter() - started:.0f} s")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
