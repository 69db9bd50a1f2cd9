"""The stress suite: worlds the model never saw, each pushing one hard-negative family (or a
scanner family) beyond what training saw, judged against ``training.gate.SUITE``.

Per world: the false-positive rate per family of people, precision and recall per channel and
per channel x type, recall per bot kind and per bot family, and the campaign CTR and open-rate
error. None of these worlds is used to train, to choose thresholds or to choose features.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from contract import load
from core.errors import BotfilterError
from features.pipeline import Enrichers
from scoring.model import MIN_CUT, BotModel, threshold_key
from simulation import simulate
from simulation.config import SimConfig
from training.evaluate import evaluate_model, reports_at_cuts
from training.fit import Prepared, prepare
from training.gate import SUITE, SuiteTargets
from training.report import EvaluationReport, FamilyRate, PrecisionRecall, json_text

# A world's further seeds are its first plus multiples of this; the validation worlds (for
# choosing knobs, never for judging) add VALIDATION_OFFSET, so no seed is ever both.
SEED_STRIDE = 100
VALIDATION_OFFSET = 5000
# The ceiling's training worlds (bench/quality_suite.py --ceiling) add this: a seed no suite or
# validation world uses (those stay below it for fewer than 850 seeds per world).
CEILING_OFFSET = 90_000


@dataclass(frozen=True)
class SuiteWorld:
    """One world of the suite: a simulation profile and a seed no training world uses."""

    profile: str
    seed: int
    pushes: str  # what it pushes beyond training

    def seeds(self, k: int = 1, validation: bool = False) -> tuple[int, ...]:
        """This world's first ``k`` seeds: the suite's, or the validation worlds' (which are
        for choosing thresholds, features and knobs; the suite's are only for judging)."""
        base = self.seed + (VALIDATION_OFFSET if validation else 0)
        return tuple(base + SEED_STRIDE * i for i in range(k))

    @property
    def ceiling_seed(self) -> int:
        """The seed of this profile's world in the ceiling's training (a diagnostic only)."""
        return self.seed + CEILING_OFFSET


SUITE_WORLDS: tuple[SuiteWorld, ...] = (
    SuiteWorld("shifted", 2, "the README's shifted world (scanners spoof, arrive later)"),
    SuiteWorld("stress_isolation", 11, "browser isolation, mostly from the scanning addresses"),
    SuiteWorld("stress_cloud_desktop", 12, "cloud desktops on the gateway's own cloud"),
    SuiteWorld("stress_vdi_proxy", 13, "Citrix/VDI farms and hosted web proxies"),
    SuiteWorld("stress_proxy_isolation", 14, "opens through a proxy, clicks through isolation"),
    SuiteWorld("stress_novel_scanner", 15, "a scanner family training never saw"),
)

SUITE_SEEDS = frozenset(w.seed for w in SUITE_WORLDS)


@dataclass(frozen=True)
class SuiteResult:
    """One world's evaluation and the targets it misses."""

    world: str
    seed: int
    pushes: str
    report: EvaluationReport
    failures: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, as saved by ``botfilter evaluate --suite``."""
        return {
            "world": self.world,
            "seed": self.seed,
            "pushes": self.pushes,
            "report": self.report.to_dict(),
            "failures": list(self.failures),
        }


def suite_failures(report: EvaluationReport, targets: SuiteTargets = SUITE) -> list[str]:
    """The targets a world's evaluation report misses (empty when it meets them all)."""
    return _failures(
        report.fpr_by_family or {},
        {ch: q.model for ch, q in report.by_channel.items()},
        report.campaign_metric_error.model.ctr_mae_pp,
        targets,
    )


def _failures(
    fpr_by_family: Mapping[str, FamilyRate],
    by_channel: Mapping[str, PrecisionRecall],
    ctr_mae_pp: float,
    targets: SuiteTargets,
) -> list[str]:
    fails: list[str] = []
    for fam, r in fpr_by_family.items():
        if r.n >= targets.min_family_events and r.model > targets.max_family_fpr:
            fails.append(f"FPR {fam} {r.model:.2%} > {targets.max_family_fpr:.0%}")
    for ch, m in by_channel.items():
        if not m.precision >= targets.min_channel_precision:
            fails.append(f"{ch} precision {m.precision:.4f} < {targets.min_channel_precision}")
        if not m.recall >= targets.min_channel_recall:
            fails.append(f"{ch} recall {m.recall:.4f} < {targets.min_channel_recall}")
    if not ctr_mae_pp <= targets.max_ctr_mae_pp:
        fails.append(f"CTR error {ctr_mae_pp:.3f} pp > {targets.max_ctr_mae_pp}")
    return fails


@dataclass(frozen=True)
class PooledWorld:
    """One profile's worlds of several seeds, pooled: every flagged person, bot and campaign
    of all its seeds counted once, so a family of 30 people is not judged on one of them."""

    world: str
    seeds: tuple[int, ...]
    fpr_by_family: Mapping[str, FamilyRate]
    worst_fpr_by_family: Mapping[str, float]  # the worst seed's rate, among judged families
    by_channel: Mapping[str, PrecisionRecall]
    ctr_mae_pp: float  # the mean over all the seeds' campaigns
    worst_ctr_mae_pp: float  # the worst seed's
    failures: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, beside the per-seed results."""
        d = asdict(self)
        d["failures"] = list(self.failures)
        return d


def pool(results: list[SuiteResult], targets: SuiteTargets = SUITE) -> list[PooledWorld]:
    """Each profile's seeds pooled (in the order the results came), judged on the targets."""
    by_world: dict[str, list[SuiteResult]] = {}
    for r in results:
        by_world.setdefault(r.world, []).append(r)
    out = []
    for world, rs in by_world.items():
        reports = [r.report for r in rs]
        fams = sorted({f for rep in reports for f in rep.fpr_by_family or {}})
        fpr: dict[str, FamilyRate] = {}
        worst: dict[str, float] = {}
        for fam in fams:
            rates = [x for rep in reports if (x := (rep.fpr_by_family or {}).get(fam)) is not None]
            n = sum(x.n for x in rates)
            flagged = sum(round(x.model * x.n) for x in rates)
            fpr[fam] = FamilyRate(model=flagged / n if n else 0.0, n=n)
            judged = [x.model for x in rates if x.n >= targets.min_family_events]
            worst[fam] = max(judged, default=float("nan"))
        channels = sorted({c for rep in reports for c in rep.by_channel})
        by_channel = {
            ch: _pooled_pr([rep.by_channel[ch].model for rep in reports if ch in rep.by_channel])
            for ch in channels
        }
        errs = [rep.campaign_metric_error for rep in reports]
        campaigns = sum(e.campaigns for e in errs)
        ctr = sum(e.model.ctr_mae_pp * e.campaigns for e in errs) / max(campaigns, 1)
        worst_ctr = max(e.model.ctr_mae_pp for e in errs)
        fails = _failures(fpr, by_channel, ctr, targets)
        seeds = tuple(r.seed for r in rs)
        out.append(PooledWorld(world, seeds, fpr, worst, by_channel, ctr, worst_ctr, tuple(fails)))
    return out


def suite_missed(results: list[SuiteResult], pooled: list[PooledWorld]) -> bool:
    """The verdict: with one seed per world, any world's miss; with several, any pooled miss
    (one seed's small family is then judged with its other seeds)."""
    if any(len(p.seeds) > 1 for p in pooled):
        return any(p.failures for p in pooled)
    return any(r.failures for r in results)


def _pooled_pr(parts: list[PrecisionRecall]) -> PrecisionRecall:
    """Precision and recall over the union of disjoint slices, from each slice's counts.

    A slice whose precision is 0 flagged something but no bot, so how much it flagged is not
    in its record: the pooled precision is then unknown (NaN), which misses any target."""
    bots = sum(p.bots for p in parts)
    n = sum(p.n for p in parts)
    tp = sum(round(p.recall * p.bots) for p in parts if p.bots)
    flagged = sum(round(p.recall * p.bots / p.precision) for p in parts if p.precision > 0)
    unknown = any(p.precision == 0 for p in parts)
    return PrecisionRecall(
        precision=float("nan") if unknown or not flagged else tp / flagged,
        recall=tp / bots if bots else float("nan"),
        n=n,
        bots=bots,
    )


def _worlds(
    root: Path,
    tenants: int,
    days: int,
    worlds: tuple[SuiteWorld, ...],
    console: Console | None,
    seeds: int,
    validation: bool,
) -> Iterator[tuple[SuiteWorld, int, Prepared]]:
    """Each world's first ``seeds`` seeds (the validation worlds' with ``validation``),
    simulated under ``root`` unless already there, prepared one at a time."""
    enrichers = Enrichers.load()
    for w in worlds:
        for seed in w.seeds(seeds, validation):
            data = Path(root) / f"{w.profile}-seed{seed}-{tenants}t-{days}d"
            simulated(data, w.profile, tenants, days, seed, console)
            yield w, seed, prepare(load(data), enrichers)


def simulated(
    data: Path, profile: str, tenants: int, days: int, seed: int, console: Console | None = None
) -> Path:
    """``data``: the world of ``profile`` and ``seed``, simulated there unless already there."""
    if not (data / "events.parquet").exists():
        if console is not None:
            console.print(f"simulating {profile} (seed {seed}) -> {data}", markup=False)
        simulate(data, tenants, days, seed, SimConfig.variant(profile))
    return data


def _judged(w: SuiteWorld, seed: int, report: EvaluationReport) -> SuiteResult:
    return SuiteResult(w.profile, seed, w.pushes, report, tuple(suite_failures(report)))


def run_suite(
    model: BotModel,
    root: Path,
    tenants: int = 3,
    days: int = 30,
    worlds: tuple[SuiteWorld, ...] = SUITE_WORLDS,
    console: Console | None = None,
    seeds: int = 1,
    validation: bool = False,
) -> list[SuiteResult]:
    """Simulate (or reuse under ``root``) each world with its first ``seeds`` seeds (the
    validation worlds' with ``validation``), and evaluate ``model`` on all their events."""
    out = []
    for w, seed, prep in _worlds(root, tenants, days, worlds, console, seeds, validation):
        result = _judged(w, seed, evaluate_model(model, prep, np.arange(len(prep.ctx))).report)
        out.append(result)
        if console is not None:
            status = "meets every target" if not result.failures else "; ".join(result.failures)
            console.print(f"{w.profile} (seed {seed}): {result.report.events:,} events: {status}")
    return out


# The cut the frontier moves: email clicks are where people behind isolation and the scanners'
# one-link checks meet (every other cut stays the model's own).
FRONTIER = ("email", "click")
FRONTIER_KEY = threshold_key(*FRONTIER)


@dataclass(frozen=True)
class FrontierPoint:
    """The suite judged with one email-click cut: its worst family and worst CTR error, each
    pooled over a world's seeds, and how many worlds miss each target."""

    cut: float
    fitted: bool  # the model's own cut
    worst_fpr: float  # among the families judged (enough people)
    worst_fpr_at: str  # "world: family"
    fpr_misses: int  # worlds with a family over the target
    worst_ctr_pp: float
    worst_ctr_at: str
    ctr_misses: int  # worlds whose CTR error is over the target
    missed: bool  # any target missed in any world (precision and recall included)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frontier_point(
    cut: float, fitted: bool, results: list[SuiteResult], targets: SuiteTargets = SUITE
) -> FrontierPoint:
    """One cut's results summed up, each world's seeds pooled (one seed pools to itself)."""
    pooled = pool(results, targets)
    worst_family: list[tuple[float, str]] = []  # per world: its worst judged family
    for p in pooled:
        judged = {
            f: r.model for f, r in p.fpr_by_family.items() if r.n >= targets.min_family_events
        }
        fam, rate = max(judged.items(), key=lambda x: x[1], default=("-", 0.0))
        worst_family.append((rate, f"{p.world}: {fam}"))
    worst_fpr, worst_fpr_at = max(worst_family, key=lambda x: x[0], default=(0.0, "-"))
    fpr_misses = sum(rate > targets.max_family_fpr for rate, _ in worst_family)
    worst_ctr, worst_ctr_at = max(
        ((p.ctr_mae_pp, p.world) for p in pooled), key=lambda x: x[0], default=(0.0, "-")
    )
    ctr_misses = sum(not p.ctr_mae_pp <= targets.max_ctr_mae_pp for p in pooled)
    missed = any(p.failures for p in pooled)
    return FrontierPoint(
        cut,
        fitted,
        worst_fpr,
        worst_fpr_at,
        fpr_misses,
        worst_ctr,
        worst_ctr_at,
        ctr_misses,
        missed,
    )


def suite_frontier(
    model: BotModel,
    root: Path,
    cuts: Sequence[float],
    tenants: int = 3,
    days: int = 30,
    worlds: tuple[SuiteWorld, ...] = SUITE_WORLDS,
    console: Console | None = None,
    seeds: int = 1,
    validation: bool = False,
) -> list[FrontierPoint]:
    """The suite (or the validation worlds) judged at each email-click cut of ``cuts`` and at
    the model's own, every world prepared once: what raising the cut trades, fewer people
    flagged for a larger CTR error, as points to choose a cut from (on the validation worlds)."""
    # the cut the model applies to those events (its own, or the default, floored)
    fitted = float(model.threshold_for(*(np.array([x]) for x in FRONTIER))[0])
    every = sorted({*map(float, cuts), fitted})
    per_cut: dict[float, list[SuiteResult]] = {c: [] for c in every}
    for w, seed, prep in _worlds(root, tenants, days, worlds, console, seeds, validation):
        reports = reports_at_cuts(model, prep, np.arange(len(prep.ctx)), *FRONTIER, every)
        for c, report in zip(every, reports, strict=True):
            per_cut[c].append(_judged(w, seed, report))
        if console is not None:
            console.print(f"{w.profile} (seed {seed}): judged at {len(every)} cuts")
    return [frontier_point(c, c == fitted, per_cut[c]) for c in every]


def print_frontier(points: list[FrontierPoint], console: Console) -> None:
    """A rich table of the frontier, a row per cut (the model's own marked)."""
    t = Table(
        title=f"The {FRONTIER_KEY} cut's frontier (targets: every family <= "
        f"{SUITE.max_family_fpr:.0%}, CTR error <= {SUITE.max_ctr_mae_pp} pp)"
    )
    for c in ("cut", "worst FPR", "family (world)", "worlds", "worst CTR", "world", "worlds", ""):
        t.add_column(c, justify="right")
    for p in points:
        world, _, family = p.worst_fpr_at.partition(": ")
        t.add_row(
            f"{p.cut:.3f}{'*' if p.fitted else ''}",
            f"{p.worst_fpr:.2%}",
            f"{family} ({world.replace('stress_', '')})" if family else world,
            str(p.fpr_misses),
            f"{p.worst_ctr_pp:.3f} pp",
            p.worst_ctr_at.replace("stress_", ""),
            str(p.ctr_misses),
            "MISS" if p.missed else "ok",
        )
    t.caption = "* the model's own cut; worlds: how many miss that target"
    console.print(t)


def print_suite(results: list[SuiteResult], console: Console) -> None:
    """Rich tables: per world the channel figures, the campaign error, the worst families."""
    t = Table(
        title="Stress suite: per world (targets: precision >= 0.99, recall >= 0.97 per channel, CTR error <= 0.3 pp)"
    )
    for c in (
        "world",
        "events",
        "email P / R",
        "sms P / R",
        "CTR err pp (max)",
        "open-rate err pp",
        "verdict",
    ):
        t.add_column(c, justify="right")
    for r in results:
        rep = r.report
        ch = rep.by_channel
        pr = {
            k: f"{ch[k].model.precision:.4f} / {ch[k].model.recall:.4f}" if k in ch else "-"
            for k in ("email", "sms")
        }
        e = rep.campaign_metric_error.model
        t.add_row(
            r.world if r.seed in SUITE_SEEDS else f"{r.world} ({r.seed})",
            f"{rep.events:,}",
            pr["email"],
            pr["sms"],
            f"{e.ctr_mae_pp:.3f} ({e.ctr_max_pp:.2f})",
            f"{e.open_rate_mae_pp:.3f}",
            "ok" if not r.failures else "MISS",
        )
    console.print(t)
    if len({r.world for r in results}) < len(results):
        # several seeds per world: the per-family tables are print_pooled's
        return
    fpr = {r.world: r.report.fpr_by_family or {} for r in results}
    recall = {r.world: r.report.recall_by_family or {} for r in results}
    console.print(
        _per_world(
            fpr, "People flagged as bots per family: FPR (n) per world (target <= 2%)", "{:.2%}"
        )
    )
    console.print(_per_world(recall, "Recall per bot family per world", "{:.4f}"))
    g = Table(title="Precision / recall per channel x type per world")
    g.add_column("world")
    groups = sorted({c for r in results for c in r.report.by_channel_type})
    for c in groups:
        g.add_column(c, justify="right")
    for r in results:
        bct = r.report.by_channel_type
        g.add_row(
            r.world.replace("stress_", ""),
            *(
                f"{bct[c].model.precision:.4f} / {bct[c].model.recall:.4f}" if c in bct else "-"
                for c in groups
            ),
        )
    console.print(g)
    for r in results:
        if r.failures:
            console.print(f"[red]{r.world}[/]: " + "; ".join(r.failures))


def print_pooled(pooled: list[PooledWorld], console: Console) -> None:
    """Rich tables of each profile's seeds pooled: the family FPRs (worst seed beside them),
    the channels' precision and recall, and the CTR error."""
    seeds = {len(p.seeds) for p in pooled}
    t = Table(title=f"Each world's {'/'.join(map(str, sorted(seeds)))} seeds pooled")
    for c in ("world", "seeds", "email P / R", "sms P / R", "CTR err pp (worst seed)", "verdict"):
        t.add_column(c, justify="right")
    for p in pooled:
        pr = {
            k: f"{p.by_channel[k].precision:.4f} / {p.by_channel[k].recall:.4f}"
            if k in p.by_channel
            else "-"
            for k in ("email", "sms")
        }
        t.add_row(
            p.world,
            ", ".join(map(str, p.seeds)),
            pr["email"],
            pr["sms"],
            f"{p.ctr_mae_pp:.3f} ({p.worst_ctr_mae_pp:.3f})",
            "ok" if not p.failures else "MISS",
        )
    console.print(t)
    f = Table(title="People flagged per family, seeds pooled: FPR (n) [worst seed] (target <= 2%)")
    f.add_column("family")
    for p in pooled:
        f.add_column(p.world.replace("stress_", ""), justify="right")
    for fam in sorted({x for p in pooled for x in p.fpr_by_family}):
        cells = []
        for p in pooled:
            x = p.fpr_by_family.get(fam)
            w = p.worst_fpr_by_family.get(fam, float("nan"))
            worst = "" if w != w else f" [{w:.2%}]"
            cells.append("-" if x is None else f"{x.model:.2%} ({x.n:,}){worst}")
        f.add_row(fam, *cells)
    console.print(f)
    for p in pooled:
        if p.failures:
            console.print(f"[red]{p.world}, seeds pooled[/]: " + "; ".join(p.failures))


def report_suite(results: list[SuiteResult], console: Console, out: Path | None = None) -> bool:
    """Print the suite's tables (each world's seeds pooled too, when it has several), save them
    as JSON to ``out``; True when a target is missed (:func:`suite_missed`)."""
    print_suite(results, console)
    pooled = pool(results)
    if any(len(p.seeds) > 1 for p in pooled):
        print_pooled(pooled, console)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"worlds": [r.to_dict() for r in results], "pooled": [p.to_dict() for p in pooled]}
        out.write_text(json_text(doc))
    return suite_missed(results, pooled)


def parse_cuts(text: str) -> list[float]:
    """``--cuts``: comma-separated cuts, each a number from ``MIN_CUT`` (below it a model never
    flags: issue 16's 0.5 rule) up to 1; a one-line error otherwise."""
    cuts = []
    for part in text.split(","):
        try:
            cut = float(part)
        except ValueError:
            raise BotfilterError(f"--cuts: {part.strip()!r} is not a number") from None
        if not MIN_CUT <= cut < 1.0:
            raise BotfilterError(f"--cuts: {cut} is not from {MIN_CUT} (the lowest cut) up to 1")
        cuts.append(cut)
    return cuts


def report_frontier(points: list[FrontierPoint], console: Console, out: Path, title: str) -> bool:
    """Print the frontier, save it as JSON to ``out`` and as a plot beside it (``.png``); True
    when the model's own cut misses a target."""
    from training.plots import frontier

    print_frontier(points, console)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"key": FRONTIER_KEY, "points": [p.to_dict() for p in points]}
    out.write_text(json_text(doc))
    fitted = next(p for p in points if p.fitted)
    png = frontier(
        [p.cut for p in points],
        [p.worst_fpr for p in points],
        [p.worst_ctr_pp for p in points],
        fitted.cut,
        SUITE.max_family_fpr,
        SUITE.max_ctr_mae_pp,
        title,
        out.with_suffix(".png"),
    )
    console.print(f"frontier saved to {out} and {png}", markup=False)
    return fitted.missed


def _per_world(rates: dict[str, Mapping[str, FamilyRate]], title: str, fmt: str) -> Table:
    """A table of one per-family breakdown: a row per family, a column per world."""
    table = Table(title=title)
    table.add_column("family")
    for world in rates:
        table.add_column(world.replace("stress_", ""), justify="right")
    for fam in sorted({f for by_family in rates.values() for f in by_family}):
        cells = []
        for by_family in rates.values():
            x = by_family.get(fam)
            cells.append("-" if x is None else f"{fmt.format(x.model)} ({x.n:,})")
        table.add_row(fam, *cells)
    return table
