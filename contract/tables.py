"""The clean tables as the stages read them: one protocol instead of ``Any`` and ``getattr``.

Three kinds of object hold them, each a :class:`CleanTables`:

- :class:`contract.validate.Validated`, what :func:`contract.load` returns (pandas, plus the
  quarantine and the counts);
- :class:`jobs.spark.tables.SparkTables`, the same tables as Spark DataFrames;
- :class:`Tables`, frames already in hand (the recompute's scoring slice, tests, benchmarks).

Rows are contract-clean: typed columns, one row per key (PRODUCT.md "Data contract").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # pandas is heavy; the CLI imports contract/ for its help
    import pandas as pd

Frame_co = TypeVar("Frame_co", covariant=True)


class CleanTables(Protocol[Frame_co]):
    """Clean ``messages`` and ``events``; ``segments`` and ``settings`` when the data has them.

    Read-only properties, so a holder whose optional tables are always present (``Validated``
    fills missing ones with empty frames) conforms too.
    """

    @property
    def messages(self) -> Frame_co: ...

    @property
    def events(self) -> Frame_co: ...

    @property
    def segments(self) -> Frame_co | None: ...

    @property
    def settings(self) -> Frame_co | None: ...


@dataclass(frozen=True)
class Tables:
    """Clean pandas tables in hand; ``segments``/``settings`` None when there are none."""

    messages: pd.DataFrame
    events: pd.DataFrame
    segments: pd.DataFrame | None = None
    settings: pd.DataFrame | None = None
