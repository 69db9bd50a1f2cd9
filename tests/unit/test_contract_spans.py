"""Runs of parts that readers take apart (:meth:`contract.parts.TenantParts.spans`, the Spark
engine's tasks): each reads only the row groups holding its rows, and gets exactly the raw
tables that reading the files once, in order, gives its parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract.parts import TenantParts

AS_OF = pd.Timestamp("2024-03-31T00:00:00Z")


def _rewrite(data: Path, order: str, rows_per_group: int = 256) -> Path:
    """Each table of ``data`` in small row groups, sorted by tenant (``grouped``, as exports
    and the simulator write them) or shuffled."""
    for path in data.glob("*.parquet"):
        frame = pd.read_parquet(path)
        if order == "grouped":
            frame = frame.sort_values("tenant_id", kind="stable", ignore_index=True)
        else:
            frame = frame.sample(frac=1.0, random_state=3, ignore_index=True)
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=rows_per_group
        )
    return data


def _same_raws(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, raw in want.items():
        assert got[name].data.equals(raw.data), name
        assert got[name].row_number_array().tolist() == raw.row_number_array().tolist(), name


def test_runs_of_a_grouped_directory_read_what_one_pass_reads(parts_world) -> None:
    data = _rewrite(parts_world(AS_OF), "grouped")
    spans = TenantParts(data, 900, contract_only=True).spans(2)
    assert spans is not None and len(spans) == 2
    assert [s.first for s in spans] == [0, spans[0].count]
    sequential = TenantParts(data, 900, contract_only=True)
    assert sum(s.count for s in spans) == len(sequential) >= 3
    total = sum(len(r) for p in sequential.parts for r in p.rows.values())
    decoded = sum(t.decoded for s in spans for t in s.tables.values())
    assert total <= decoded <= 1.5 * total
    # the second run starts past the first row group of its biggest tables
    assert spans[1].tables["events"].start > 0 and spans[1].tables["messages"].start > 0
    i = 0
    for span in spans:
        for raws in span.raws():
            _same_raws(raws, sequential.raw(i))
            i += 1
    assert i == len(sequential)


def test_a_directory_not_grouped_by_tenant_is_one_run(parts_world) -> None:
    """Every reader would decode nearly every row: one run reads the files once."""
    data = _rewrite(parts_world(AS_OF), "shuffled")
    parts = TenantParts(data, 900, contract_only=True)
    spans = parts.spans(2)
    assert spans is not None and len(spans) == 1 and spans[0].count == len(parts)
    sequential = TenantParts(data, 900, contract_only=True)
    for i, raws in enumerate(spans[0].raws()):
        _same_raws(raws, sequential.raw(i))


def test_csv_has_no_runs(tmp_path: Path, parts_world) -> None:
    data = parts_world(AS_OF)
    events = pd.read_parquet(data / "events.parquet")
    (data / "events.parquet").unlink()
    events.to_csv(data / "events.csv", index=False)
    assert TenantParts(data, 900).spans(2) is None


@pytest.mark.parametrize("groups", [(), (0,)])
def test_a_run_without_rows_in_a_table_reads_none(parts_world, groups: tuple[int, ...]) -> None:
    """A table holding no row of the run's parts: nothing read, empty raw tables."""
    from contract.parts import Span, TableSpan

    data = _rewrite(parts_world(AS_OF), "grouped")
    tables = {
        "settings": TableSpan(
            str(data / "settings.parquet"),
            groups,
            0,
            np.full(2 if groups else 0, -1, np.int32),
            0,
        )
    }
    (raws,) = list(Span(0, 1, tables).raws())
    assert raws["settings"].data.num_rows == 0
