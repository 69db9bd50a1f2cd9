"""A labelled synthetic world of email/SMS sends, bot and human interactions.

Public API (imported lazily so ``botfilter`` starts fast)::

    simulate(out, tenants, days, seed, config=None) -> SimSummary   # writes NAME.parquet
    generate(tenants, days, seed, config=None) -> dict[str, DataFrame]
    SimConfig, SimConfig.variant("shifted"), PROFILES
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import PROFILES, SimConfig
    from .core import SimSummary, generate, simulate

__all__ = ["PROFILES", "SimConfig", "SimSummary", "generate", "simulate"]


def __getattr__(name: str) -> Any:
    if name in ("SimConfig", "PROFILES"):
        # Imported on use: `botfilter --help` imports this package (simulation.core: 0.87 s).
        from . import config

        return getattr(config, name)
    if name in ("SimSummary", "generate", "simulate"):
        # Imported on use: simulation.core (pandas, numba) adds 0.87 s to `botfilter --help`.
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module 'simulation' has no attribute {name!r}")
