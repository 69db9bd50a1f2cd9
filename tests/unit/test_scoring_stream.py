"""Scoring a data directory part by part (whole tenants, Parquet read lazily) gives exactly the
scores and counts of loading and scoring it whole."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import contract
from contract.parts import TenantParts, iter_raw_parts, plan_parts, unshare_raw
from features.definitions import FEATURE_NAMES
from features.pipeline import Enrichers, build_features, event_context
from scoring.batch import score_validated
from scoring.model import BotModel
from scoring.scores_file import read_scores, write_scores
from scoring.stream import ScoreRun, score_data_dir
from simulation.core import generate


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BotModel]:
    """Four tenants as Parquet in small row groups, with broken rows of every kind around."""
    tables = generate(tenants=4, days=2, seed=4)
    messages, events = tables["messages"], tables["events"]
    bad_events = events.iloc[[0, 1, 2, 6, 7, 3]].copy()
    bad_events["event_id"] = [
        "x-no-tenant", "x-unknown", "x-late-ts", "x-other-tenant", "x-quarantined-elsewhere",
        events["event_id"].iat[5],
    ]  # fmt: skip
    bad_events.loc[bad_events.index[0], "tenant_id"] = None
    bad_events.loc[bad_events.index[1], "message_id"] = "no-such-message"
    bad_events.loc[bad_events.index[2], "occurred_at"] = pd.NaT
    # a message that only another tenant has (kept there: "tenant mismatch with message"; only
    # quarantined there: "unknown message"), whose tenants fall in different parts
    others = sorted(set(messages["tenant_id"]) - {events["tenant_id"].iat[6]})
    bad_events.loc[bad_events.index[3], "tenant_id"] = others[-1]
    bad_events.loc[bad_events.index[4], "message_id"] = "m-no-tenant"
    bad_events["tenant_id"] = bad_events["tenant_id"].astype(object)
    # the last three come at the end of the file (the tenants' order of first appearance stays
    # the file's); the last one repeats an event of the first tenant
    events = pd.concat(
        [events.iloc[:100], bad_events.iloc[:3], events.iloc[100:], bad_events.iloc[3:]],
        ignore_index=True,
    )
    events.loc[events.index[-1]] = events.iloc[5]  # an exact duplicate delivery
    bad_message = messages.iloc[[0]].copy()
    bad_message["message_id"], bad_message["tenant_id"] = "m-no-tenant", None
    messages = pd.concat([messages, bad_message], ignore_index=True)

    data = tmp_path_factory.mktemp("world")
    pq.write_table(pa.Table.from_pandas(messages, preserve_index=False),
                   data / "messages.parquet", row_group_size=500)  # fmt: skip
    table = pa.Table.from_pandas(events, preserve_index=False)
    # one User-Agent that is not UTF-8 (Parquet readers let it through; validation must not)
    ua = table["user_agent"].combine_chunks().cast(pa.binary()).to_pylist()
    ua[200] = b"Mozilla/5.0 \xff"
    column = pa.array(ua, pa.binary()).view(pa.string())
    table = table.set_column(table.schema.get_field_index("user_agent"), "user_agent", column)
    pq.write_table(table, data / "events.parquet", row_group_size=700)
    for name in ("segments", "settings"):
        tables[name].to_parquet(data / f"{name}.parquet", index=False)

    validated = contract.load(data)
    ctx = event_context(validated.messages, validated.events).reset_index(drop=True)
    feats = build_features(ctx, Enrichers.load())
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1, "num_threads": 1},
        lgb.Dataset(feats.to_numpy(np.float64), (ctx["label"] == "bot").to_numpy().astype(int)),
        num_boost_round=10,
    )
    model = BotModel(booster, list(FEATURE_NAMES), (1.0, 0.0), {"default": 0.5}, "test/1", 1)
    return data, model


@pytest.mark.parametrize(
    ("part_events", "workers"), [(1, 1), (600, 1), (600, 2), (10**9, 2), (1, 2)]
)
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_streamed_scores_equal_the_whole_directory(
    world, settings, tmp_path, part_events, workers, suffix
):
    data, model = world
    validated = contract.load(data)
    assert validated.report.quarantined_total >= 5 and validated.report.tables["events"].duplicates
    whole = tmp_path / f"whole{suffix}"
    expected_scores = score_validated(validated, settings, model=model)
    # tenant_id second, as `botfilter score` writes it: event ids are unique within a tenant only
    assert list(expected_scores.columns[:2]) == ["event_id", "tenant_id"]
    write_scores(expected_scores, whole)

    streamed = tmp_path / f"streamed{suffix}"
    run = score_data_dir(
        data, streamed, settings, model=model, part_events=part_events, workers=workers
    )
    assert run.report.as_dict() == validated.report.as_dict()
    reasons = run.report.tables["events"].quarantined
    assert reasons["tenant mismatch with message"] == 1 and reasons["unknown message"] == 2
    expected, got = read_scores(whole), read_scores(streamed)
    assert len(got) == len(validated.events) == run.events
    # the simulator writes each tenant's rows together, so even the order is the file's
    pd.testing.assert_frame_equal(
        got.assign(reasons=got["reasons"].map(list)),
        expected.assign(reasons=expected["reasons"].map(list)),
    )
    assert run.bots == int(expected["is_bot"].sum()) and 0 < run.bots < run.events
    read = pd.read_parquet if suffix == ".parquet" else pd.read_csv
    assert read(streamed)["tenant_id"].tolist() == read(whole)["tenant_id"].tolist()
    assert not list(tmp_path.glob(".*partial"))


def test_rows_of_a_tenant_spread_over_the_file_still_score_the_same(world, settings, tmp_path):
    data, model = world
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for name in ("messages", "events", "segments", "settings"):
        table = pq.read_table(data / f"{name}.parquet")
        order = np.random.default_rng(3).permutation(table.num_rows)
        pq.write_table(
            table.take(pa.array(order)), shuffled / f"{name}.parquet", row_group_size=300
        )
    validated = contract.load(shuffled)
    expected = score_validated(validated, settings, model=model)
    run = score_data_dir(shuffled, tmp_path / "s.parquet", settings, model=model, part_events=800)
    got = read_scores(tmp_path / "s.parquet")
    key = ["event_id", "bot_score"]
    pd.testing.assert_frame_equal(
        got.sort_values(key, ignore_index=True).assign(reasons=lambda f: f.reasons.map(list)),
        expected.sort_values(key, ignore_index=True).assign(reasons=lambda f: f.reasons.map(list)),
    )
    assert run.report.as_dict() == validated.report.as_dict()
    reasons = run.report.tables["events"].quarantined
    assert reasons["tenant mismatch with message"] == 1 and reasons["unknown message"] == 2


def test_quarantine_row_numbers_are_the_file_rows(world):
    data, _ = world
    parts = list(iter_raw_parts(data, part_events=600))
    assert len(parts) > 3
    whole = contract.load(data).quarantine
    from contract.validate import validate_raw

    streamed = pd.concat([validate_raw(p).quarantine for p in parts], ignore_index=True)
    # a part holds no other tenant: an event naming another tenant's message is an unknown one
    # there (TenantParts.settle corrects the counts, which is all the parts' callers report)
    whole["reason"] = whole["reason"].replace("tenant mismatch with message", "unknown message")
    key = ["table", "row_number"]
    pd.testing.assert_frame_equal(
        streamed.sort_values(key, ignore_index=True), whole.sort_values(key, ignore_index=True)
    )
    assert (streamed["reason"] == "invalid UTF-8 text").sum() == 1


def test_plan_parts_packs_whole_tenants_in_order_of_their_first_event():
    # tenant codes: 0 and 1 have events, 2 only messages; -1 is a row without a tenant
    codes = {
        "events": np.array([1, 1, 0, 1, 0, -1]),
        "messages": np.array([0, 1, 2, -1, 1]),
        "segments": np.array([], dtype=np.int64),
    }
    parts = plan_parts(codes, part_events=3)
    assert [p.rows["events"].tolist() for p in parts] == [[0, 1, 3], [2, 4], [5]]
    assert [p.rows["messages"].tolist() for p in parts] == [[1, 4], [0, 2], [3]]
    assert [p.events for p in parts] == [3, 2, 1]
    whole = plan_parts(codes, part_events=100)
    assert [p.rows["events"].tolist() for p in whole] == [[0, 1, 2, 3, 4], [5]]
    empty = plan_parts({"events": np.zeros(0, np.int64), "messages": np.zeros(0, np.int64)})
    assert len(empty) == 1 and empty[0].events == 0


def test_the_last_parts_are_quarter_parts() -> None:
    """Parts run side by side and the run ends with the last: the last two parts' worth of
    events go in quarter parts (whole tenants still), so no worker finishes a full part alone."""
    events = np.repeat(np.arange(10), 10)  # ten tenants of ten events, in order
    parts = plan_parts({"events": events, "messages": np.arange(10)}, part_events=30)
    assert [p.events for p in parts] == [30, 20, 10, 10, 10, 10, 10]
    assert np.concatenate([p.rows["events"] for p in parts]).tolist() == list(range(100))


def test_rows_index_is_a_slice_for_one_ascending_run_only() -> None:
    from scoring.batch import _rows_index

    assert _rows_index(np.array([3, 4, 5])) == slice(3, 6)
    for rows in ([3, 5, 4], [3, 5], [4, 3, 5], []):
        got = _rows_index(np.array(rows, dtype=np.int64))
        assert isinstance(got, np.ndarray) and got.tolist() == rows


def test_workers_load_a_resolved_model_that_this_process_never_reads(
    world, settings, tmp_path, monkeypatch
):
    """`botfilter score` with workers: the caller resolves the model's files (no LightGBM in it)
    and the workers load and compile them; the scores equal those of the loaded model."""
    import json

    from scoring.files import METADATA_FILE, MODEL_FILE
    from scoring.model import BotModel

    data, model = world
    saved = tmp_path / "model-dir"
    saved.mkdir()
    model.booster.save_model(str(saved / MODEL_FILE))
    (saved / METADATA_FILE).write_text(json.dumps(model.metadata()))

    by_model, by_uri = tmp_path / "by-model.parquet", tmp_path / "by-uri.parquet"
    score_data_dir(data, by_model, settings, model=model, part_events=600, workers=2)

    def never(*_args: object) -> BotModel:
        raise AssertionError("the caller read the booster")

    monkeypatch.setattr(BotModel, "from_files", classmethod(never))  # this process only
    run = score_data_dir(data, by_uri, settings, model_uri=str(saved), part_events=600, workers=2)
    assert run.model_version == "model-dir"
    expected, got = read_scores(by_model), read_scores(by_uri)
    assert (got["model_version"] == "model-dir").all()
    pd.testing.assert_frame_equal(
        got.drop(columns="model_version").assign(reasons=got["reasons"].map(list)),
        expected.drop(columns="model_version").assign(reasons=expected["reasons"].map(list)),
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_score_ignores_extra_columns_even_broken_ones(world, settings, tmp_path, suffix):
    """PRODUCT.md: extra columns are kept and ignored. `score` writes no clean tables, so it
    never reads them: text that is not UTF-8 in an extra column does not quarantine the event,
    and the scores and counts equal those of the directory without that column."""
    import shutil

    from contract.parts import TenantParts

    data, model = world
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    table = pq.read_table(data / "events.parquet")
    notes = [b"fine"] * table.num_rows
    notes[300] = b"not \xff UTF-8"
    column = pa.array(notes, pa.binary()).view(pa.string())
    pq.write_table(table.append_column("note", column), broken / "events.parquet",
                   row_group_size=700)  # fmt: skip

    parts = TenantParts(broken, 600, contract_only=True)
    assert "note" not in parts.raw(0)["events"].data.column_names
    # label is the contract's (an invalid one is quarantined); the simulator's family is not
    names = parts.raw(1)["events"].data.column_names
    assert "label" in names and "family" not in names

    plain, extra = tmp_path / f"plain{suffix}", tmp_path / f"extra{suffix}"
    run_plain = score_data_dir(data, plain, settings, model=model, part_events=600, workers=1)
    run_extra = score_data_dir(broken, extra, settings, model=model, part_events=600, workers=1)

    def counts(run: ScoreRun) -> dict:
        return {name: {**t, "source": None} for name, t in run.report.as_dict().items()}

    assert counts(run_extra) == counts(run_plain)
    assert run_extra.events == run_plain.events
    got, expected = read_scores(extra), read_scores(plain)
    pd.testing.assert_frame_equal(
        got.assign(reasons=got["reasons"].map(list)),
        expected.assign(reasons=expected["reasons"].map(list)),
    )


def test_scores_parquet_keeps_event_ids_out_of_dictionaries(tmp_path):
    """Event ids are all distinct: the writer must not try a dictionary for them (a third of
    the writing time); the repeated columns keep theirs, and the file reads back the same."""
    scores = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(1000)],
            "tenant_id": ["t1"] * 1000,
            "bot_score": np.linspace(0, 1, 1000),
            "is_bot": [False, True] * 500,
            "reasons": [["ua_crawler", "latency"], []] * 500,
            "model_version": "botfilter/1",
            "bot_kind": ["", "crawler"] * 500,
        }
    )
    path = tmp_path / "scores.parquet"
    write_scores(scores, path)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(7)}
    assert "RLE_DICTIONARY" not in encodings["event_id"]
    for column in ("tenant_id", "reasons.list.element", "model_version", "bot_kind"):
        assert "RLE_DICTIONARY" in encodings[column], column
    # Min/max statistics where a reader can skip row groups by them, not for the ids or lists.
    stats = {meta.column(i).path_in_schema: meta.column(i).is_stats_set for i in range(7)}
    assert stats == {
        "event_id": False,
        "tenant_id": True,
        "bot_score": True,
        "is_bot": True,
        "reasons.list.element": False,
        "model_version": True,
        "bot_kind": True,
    }
    got = read_scores(path)
    pd.testing.assert_frame_equal(
        got.assign(reasons=got["reasons"].map(list)),
        scores.assign(reasons=scores["reasons"].map(list)),
    )


def test_a_younger_part_that_finishes_first_frees_its_worker():
    """The caller hands a worker the next part as soon as any part finishes, not only the
    oldest (waiting for the oldest left a worker idle); the file keeps the parts' order."""
    import threading
    from collections import deque
    from concurrent.futures import Future

    from scoring.stream import _write_done

    f0, f1 = Future(), Future()
    written: list[str] = []
    threading.Timer(0.05, f1.set_result, ["p1"]).start()
    _write_done(deque([f0, f1]), 1, written.append)  # returns once f1 is done
    assert f1.done() and not f0.done() and written == []  # p0 first: p1 waits
    f0.set_result("p0")
    pending = deque([f0, f1])
    _write_done(pending, 1, written.append)
    assert written == ["p0", "p1"] and not pending


def test_memory_goes_back_only_above_what_a_process_keeps(monkeypatch):
    """Freed memory is handed back (malloc_trim, Arrow's unused pages) only once the process's
    resident set exceeds what it keeps between parts: trimming after every part made each part
    fault all its pages in again."""
    import scoring.stream as stream

    resident = stream._resident_bytes()
    with open("/proc/self/status") as status:
        vm_rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    assert resident is not None and abs(resident - vm_rss * 1024) < 64 << 20

    trims: list[int] = []

    class Libc:
        def malloc_trim(self, pad: int) -> int:
            trims.append(pad)
            return 1

    monkeypatch.setattr(stream, "_libc", Libc)
    stream.give_back_memory(keep=resident + (1 << 30))
    assert trims == []
    stream.give_back_memory(keep=resident // 2)
    assert trims == [0]
    monkeypatch.setattr(stream, "_resident_bytes", lambda: None)  # no /proc: always hand back
    stream.give_back_memory(keep=1 << 40)
    assert trims == [0, 0]


def test_workers_score_without_scikit_learn(world, settings, tmp_path):
    """A worker needs LightGBM's Booster only: importing lightgbm plainly pulled in
    scikit-learn and scipy.stats (1.2 s of CPU in the fork server on every run)."""
    from scoring.batch import load_shipped
    from scoring.stream import ship_model
    from scoring.workers import start_workers

    _, model = world
    pool = start_workers(1)
    try:
        pool.submit(load_shipped, ship_model(model, tmp_path, settings)).result(timeout=300)
        loaded = "[m in __import__('sys').modules for m in ('lightgbm', 'sklearn', 'scipy.stats')]"
        assert pool.submit(eval, loaded).result(timeout=60) == [True, False, False]
    finally:
        pool.shutdown()


def test_a_pool_gets_its_own_preload_after_another_started_the_fork_server():
    """There is one fork server per process, and a preload applied only to a server not yet
    started: in a long-lived process (the worker loop, the demo) whose first pool preloaded other
    modules, the scoring workers came without the scoring stack warm (and this module's test of
    them failed whenever another test had started the server first)."""
    from core.workers import start_pool

    first = start_pool(1, ["json"])
    try:
        assert first.submit(abs, -1).result(timeout=120) == 1  # the server runs with "json"
    finally:
        first.shutdown()
    second = start_pool(1, ["email.mime.text"])
    try:
        has = "'email.mime.text' in __import__('sys').modules"
        assert second.submit(eval, has).result(timeout=120) is True
    finally:
        second.shutdown()


def test_workers_start_with_the_enrichers_and_kernels_of_the_fork_server():
    """The fork server imports LightGBM, builds the enrichers and loads the compiled kernels once
    (scoring.warm); a worker forked from it has them before it is asked anything (each built its own: about
    1.4 CPU s per worker)."""
    from scoring.workers import start_workers

    pool = start_workers(1)
    try:
        warmed = (
            "('enrichers' in __import__('scoring.batch').batch._WORKER, "
            "min(len(f.signatures) for n, f in vars(__import__('features.kernels').kernels).items()"
            " if hasattr(f, 'signatures') and not n.startswith('_')), "
            "'lightgbm' in __import__('sys').modules, 'sklearn' in __import__('sys').modules)"
        )
        has_enrichers, fewest_signatures, lightgbm, sklearn = pool.submit(eval, warmed).result(
            timeout=300
        )
        assert has_enrichers and fewest_signatures >= 1
        # LightGBM is imported once for every worker, and without scikit-learn (1.2 s more)
        assert (lightgbm, sklearn) == (True, False)
    finally:
        pool.shutdown()


def test_warm_up_loads_every_kernel_a_real_context_uses():
    """After warm_up's two fixed rows, features of a simulated world (with the bursts on the
    pool's threads, as large parts run them) load no further kernel signature: the workers' first part compiles or
    loads nothing. Run in a fresh interpreter: this one has run other tests' kernels."""
    import subprocess
    import sys

    code = (
        "from features import kernels, pipeline\n"
        "from features.pipeline import Enrichers, build_features, event_context, warm_up\n"
        "from contract.validate import validate_tables\n"
        "from simulation.core import generate\n"
        "def signatures():\n"
        "    return {n: list(f.signatures) for n, f in vars(kernels).items()"
        " if hasattr(f, 'signatures')}\n"
        "assert not any(signatures().values())\n"
        "enrichers = Enrichers.load()\n"
        "warm_up(enrichers)\n"
        "warm = signatures()\n"
        "v = validate_tables(generate(tenants=3, days=8, seed=5))\n"
        "ctx = event_context(v.messages, v.events)\n"
        "pipeline.PARALLEL_FROM = 1_000  # the bursts on the pool's threads, as in large parts\n"
        "build_features(ctx, enrichers)\n"
        "build_features(ctx.iloc[:500], enrichers)\n"
        "public = [s for n, s in warm.items() if not n.startswith('_')]  # _ ones are inlined\n"
        "print(signatures() == warm, len(public) >= 5 and all(public))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["True", "True"]


def test_pieces_of_a_batch_are_its_rows_per_part_in_order():
    from contract.parts import _pieces

    batch = pa.RecordBatch.from_pydict({"x": [10, 11, 12, 13, 14, 15]})

    def rows(owners: list[int]) -> list[tuple[int, list[int]]]:
        got = _pieces(batch, np.array(owners, dtype=np.int32))
        return [(owner, piece.column(0).to_pylist()) for owner, piece in got]

    # grouped: one run per part, taken as slices of the batch
    assert rows([0, 0, 1, 1, 1, 2]) == [(0, [10, 11]), (1, [12, 13, 14]), (2, [15])]
    assert rows([3] * 6) == [(3, [10, 11, 12, 13, 14, 15])]
    # a part in two runs: filtered, each part's rows still in order
    assert rows([0, 1, 0, 1, 2, 2]) == [(0, [10, 12]), (1, [11, 13]), (2, [14, 15])]
    assert _pieces(batch.slice(0, 0), np.zeros(0, dtype=np.int32)) == []


def test_tenant_codes_are_one_space_across_tables_and_encodings():
    """Tenant ids arrive dictionary-encoded (as Parquet stores them) or as plain text (another
    type, CSV): one code per tenant across tables, -1 for a missing one."""
    from contract.parts import _codes

    stored = pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0], pa.int32()), ["b", "a"])
    codes = _codes(
        {
            "events": pa.chunked_array([stored]),
            "messages": pa.chunked_array([["a", "c", None], ["b"]]),
            "segments": pa.chunked_array([], pa.string()),
        }
    )
    assert codes["events"].tolist() == [0, 1, -1, 0]
    assert codes["messages"].tolist() == [1, 2, -1, 0]
    assert codes["segments"].tolist() == []


def test_tenants_with_messages_per_part_in_code_order():
    """Each part lists the tenants its message rows belong to, once each and in code order;
    rows without a tenant (-1) name none, and a part without message rows lists nothing."""
    from contract.parts import _tenants_with_messages

    lookup = {"t0": 0, "t1": 1, "t2": 2, "t3": 3}
    codes = {"messages": np.array([2, 0, -1, 2, 1, 0, 3], dtype=np.int64)}
    assigned = {"messages": np.array([1, 0, 2, 1, 0, 0, 1], dtype=np.int32)}
    got = _tenants_with_messages(codes, assigned, lookup, 4)
    assert got == [["t0", "t1"], ["t2", "t3"], [], []]


def test_workers_import_botfilter_not_the_packages_where_the_command_runs(tmp_path):
    """A folder named like one of botfilter's packages in the current directory (here
    `contract/`) must not shadow it in the workers: the fork server's `python -c` put the
    directory first on its sys.path."""
    import subprocess
    import sys

    (tmp_path / "contract").mkdir()
    (tmp_path / "contract" / "__init__.py").write_text("SHADOW = True\n")
    code = (
        "from scoring.workers import start_workers\n"
        "pool = start_workers(1, ('contract.parts',))\n"
        "print(pool.submit(eval, '__import__(\"contract\").__file__').result(timeout=120))\n"
        "pool.shutdown()\n"
    )
    # scoring.workers (the standard library only) comes from botfilter: no `scoring/` here
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert Path(run.stdout.strip()).parent.parent != tmp_path
    assert Path(run.stdout.strip()).name == "__init__.py"


def test_parts_shared_as_dictionaries_come_back_as_the_plain_parts(world, tmp_path):
    """A worker's part is the part read as plain text: its few-valued text travels as
    dictionaries (read so from Parquet), which the worker decodes; the row that is not UTF-8 is
    set aside the same way."""
    source, _ = world
    data = tmp_path / "data"
    data.mkdir()
    for name in ("messages", "segments", "settings"):
        (data / f"{name}.parquet").write_bytes((source / f"{name}.parquet").read_bytes())
    # a second row that is not UTF-8, in a column read as a dictionary
    table = pq.read_table(source / "events.parquet")
    kind = table["type"].combine_chunks().cast(pa.binary()).to_pylist()
    kind[900] = b"cl\xffick"
    column = pa.array(kind, pa.binary()).view(pa.string())
    table = table.set_column(table.schema.get_field_index("type"), "type", column)
    pq.write_table(table, data / "events.parquet", row_group_size=700)

    plain = TenantParts(data, part_events=600, contract_only=True)
    coded = TenantParts(data, part_events=600, contract_only=True, dictionaries=True)
    events = coded._sources["events"].coded
    assert {"tenant_id", "type", "http_method"} <= set(events) and "event_id" not in events
    assert "channel" in coded._sources["messages"].coded
    assert len(coded) == len(plain) > 3
    rejected = 0
    shared = tmp_path / "shared"
    shared.mkdir()
    for i in range(len(plain)):
        expected = plain.raw(i)
        got = unshare_raw(coded.share(i, shared / f"part-{i}"))
        assert got.keys() == expected.keys()
        for name, raw in expected.items():
            assert got[name].data.equals(raw.data), (i, name)
            assert got[name].data.schema == raw.data.schema
            np.testing.assert_array_equal(got[name].row_number_array(), raw.row_number_array())
            assert got[name].rejected == raw.rejected
            rejected += len(raw.rejected)
    assert rejected == 2  # the User-Agent and the event type that are not UTF-8
    assert not list(shared.iterdir())  # the worker's side removed the files


@pytest.mark.parametrize(("part_events", "workers"), [(1, 1), (600, 1), (600, 2)])
def test_validate_in_parts_writes_the_whole_directorys_files(world, tmp_path, part_events, workers):
    """`botfilter validate` on Parquet, part by part (in worker processes too): the same clean
    files (the simulator writes each tenant's rows together), the same quarantine (order,
    reasons: an event naming another tenant's message included) and the same counts as
    validating the directory whole."""
    from contract.readers import read_data_dir, write_parquet
    from contract.streamed import PRELOAD, validate_parts
    from contract.validate import validate_raw_arrow
    from core.workers import start_pool

    data, _ = world
    whole = validate_raw_arrow(read_data_dir(data), extras=True)
    (tmp_path / "whole").mkdir()
    for name, table in {**whole.tables, "quarantine": whole.quarantine}.items():
        if isinstance(table, pd.DataFrame):
            write_parquet(table, tmp_path / "whole" / f"{name}.parquet")
        else:
            pq.write_table(table, tmp_path / "whole" / f"{name}.parquet")
    parts = TenantParts(data, part_events)
    assert len(parts) > 3
    pool = start_pool(workers, PRELOAD) if workers > 1 else None
    try:
        report = validate_parts(parts, tmp_path / "parts", pool=pool, workers=workers)
    finally:
        if pool is not None:
            pool.shutdown()
    assert report.as_dict() == whole.report.as_dict()
    assert report.tables["events"].quarantined["tenant mismatch with message"] == 1
    for name in ("messages", "events", "segments", "settings", "quarantine"):
        expected = pq.read_table(tmp_path / "whole" / f"{name}.parquet")
        got = pq.read_table(tmp_path / "parts" / f"{name}.parquet")
        assert got.replace_schema_metadata().equals(expected.replace_schema_metadata()), name
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [
        "events.parquet", "messages.parquet", "quarantine.parquet", "segments.parquet",
        "settings.parquet",
    ]  # fmt: skip
