"""When ``botfilter monitor`` alerts: its thresholds in one place, with no heavy imports (the
command's option defaults read them, and ``botfilter --help`` must not load pandas)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """When ``monitor`` alerts (and ``botfilter monitor`` exits non-zero)."""

    feature_psi: float = 0.25  # the usual "significant shift" bar of PSI
    score_psi: float = 0.2
    # PSI is judged on at least this many live events: below it, sampling alone moves it past
    # the bars (the largest of 80 features' 12-bin PSI, drawn like the reference: 0.29-0.65 at
    # 100 events, 0.14-0.17 at 200, 0.05-0.06 at 500).
    psi_min_events: int = 500
    network_share_change: float = 0.3  # absolute change in a network's bot share
    network_min_events: int = 200  # in both reference and live data
    candidate_min_recipients: int = 20  # unflagged fast fan-out reaching this many recipients
    candidate_min_fast_share: float = 0.5  # ... and most of the network's unflagged events fast
    candidate_fanout: int = 3  # an event counts as fan-out at this many recipients per minute
