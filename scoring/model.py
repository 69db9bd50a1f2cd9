"""The scoring model: a LightGBM booster plus what the MLflow run logged with it.

A ``BotModel`` carries its feature list, Platt calibration and per-(channel, type) thresholds, so
whoever loads it (CLI, API, jobs, Spark executors) scores the same way. Raw scores come from
compiled trees (lleaves) when available, else from LightGBM itself.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from contract.schema import SCORE_COLUMNS
from features.definitions import FEATURE_NAMES, LOOKAHEAD_FEATURES
from scoring.compiled import compile_explainer, compile_trees
from scoring.explain import FlatTrees, flatten, lists_of_codes, reason_codes, score_block
from scoring.files import content_id
from scoring.kind import KindHead, bot_kinds
from scoring.scores_file import scores_arrow_schema

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger(__name__)
_CHUNK = 16_384  # rows per compiled-tree call when no reasons are asked for
# The provisional head is compiled when a call gives it this many rows: below, the tree walker
# scores as fast as the ~9 s of compiling would pay back (a batch's last minutes, API requests).
PROVISIONAL_COMPILE_FROM = 50_000


# is_bot is never true below this calibrated score (PRODUCT.md): a model registered with a lower
# cut is held to it when scoring.
MIN_CUT = 0.5


def import_lightgbm_lean() -> None:
    """Import LightGBM without scikit-learn, for a process that only scores.

    lightgbm imports scikit-learn (and with it scipy.stats) whenever it is installed, for its
    scikit-learn estimators: 1.2 s of CPU, against 0.04 s for the Booster alone. A scoring
    worker needs the Booster only. Its scikit-learn API stays off for the process.
    """
    if "lightgbm" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # import sklearn -> ImportError
    try:
        import lightgbm  # noqa: F401
    finally:
        del sys.modules["sklearn"]


def threshold_key(channel: str, event_type: str) -> str:
    """Key of a per-(channel, type) threshold, e.g. ``email:click``."""
    return f"{channel}:{event_type}"


# The feature saying an event came from a mail-security vendor's published address (not a model
# input: people share those addresses through the vendor's browser isolation).
SECURITY_VENDOR = "net_security_vendor"
_VENDOR_SUFFIX = ":security_vendor"


def vendor_key(channel: str, event_type: str) -> str:
    """Key of the cut for (channel, type) events from a security vendor's address, e.g.
    ``email:click:security_vendor``; it only ever raises the (channel, type) cut."""
    return threshold_key(channel, event_type) + _VENDOR_SUFFIX


def vendor_rows(features: pd.DataFrame) -> np.ndarray | None:
    """Which rows of a features frame come from a security vendor's address (None when the
    frame lacks the column: no vendor cut applies)."""
    if SECURITY_VENDOR not in features.columns:
        return None
    return features[SECURITY_VENDOR].to_numpy(dtype=np.float64) > 0


@dataclass
class BotModel:
    """A calibrated, thresholded LightGBM bot classifier."""

    booster: lgb.Booster
    feature_names: list[str]
    calibration: tuple[float, float]  # Platt: p = sigmoid(a * raw + b)
    thresholds: dict[str, float]  # threshold_key -> threshold; "default" as fallback
    version: str = "unregistered"
    threads: int = 2
    kind: KindHead | None = None  # which kind of bot; None in models registered before it
    # The causal model that answers for rows whose look-ahead window has not passed yet (their
    # look-ahead features are missing: the online API's answers, a batch's last minutes). None
    # in models without look-ahead features, which answer every row themselves.
    provisional: BotModel | None = None
    _compiled: Any = field(default=None, repr=False)
    _trees: FlatTrees | None = field(default=None, repr=False)
    _fmaps: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] = field(
        default_factory=dict, repr=False
    )
    _explainer: Any = field(default=None, repr=False)  # compiled for FEATURE_NAMES' layout
    # (thresholds, floored, vendor cuts as (channel, type, cut)): derived once per dict
    _cuts: tuple[Any, dict[str, float], tuple[tuple[str, str, float], ...]] = field(
        default=(None, {}, ()), repr=False
    )
    _model_id: str | None = field(default=None, repr=False)
    _compile_to: Path | None = field(default=None, repr=False)  # a head compiled on first use

    @property
    def model_id(self) -> str:
        """Content id: what caches and stored scores are keyed by (see :func:`content_id`).

        A registry model has the digest of its downloaded files; any other (trained in this
        process, built in a test) the digest of its trees and metadata as they are now.
        """
        if self._model_id is None:
            meta = json.dumps(self.metadata(), sort_keys=True).encode()
            return content_id(self.booster.model_to_string().encode(), meta)
        return self._model_id

    @model_id.setter
    def model_id(self, value: str) -> None:
        self._model_id = value

    # --- persistence -------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Everything besides the bot trees, as logged next to the model in MLflow (the kind
        head's trees included: whatever ships the metadata ships the head)."""
        meta: dict[str, Any] = {
            "feature_names": self.feature_names,
            "calibration": list(self.calibration),
            "thresholds": self.thresholds,
        }
        if self.kind is not None:
            meta["kind"] = self.kind.metadata()
        if self.provisional is not None:
            head = self.provisional
            meta["provisional"] = {
                "booster": head.booster.model_to_string(),
                "feature_names": head.feature_names,
                "calibration": list(head.calibration),
                "thresholds": head.thresholds,
            }
        return meta

    @classmethod
    def from_metadata(
        cls, booster: lgb.Booster, meta: dict[str, Any], version: str, threads: int = 2
    ) -> BotModel:
        """A model from its trees and the metadata :meth:`metadata` wrote."""
        a, b = meta["calibration"]
        kind = KindHead.from_metadata(meta.get("kind"), threads)
        provisional = None
        head = meta.get("provisional")
        if head:
            import lightgbm as lgb  # on use: see from_files

            pa_, pb = head["calibration"]
            provisional = cls(
                lgb.Booster(model_str=head["booster"]),
                list(head["feature_names"]),
                (float(pa_), float(pb)),
                dict(head["thresholds"]),
                version,
                threads,
            )
        return cls(
            booster,
            list(meta["feature_names"]),
            (float(a), float(b)),
            dict(meta["thresholds"]),
            version,
            threads,
            kind,
            provisional,
        )

    @classmethod
    def from_files(
        cls, model_file: Path, metadata_file: Path, version: str, threads: int = 2
    ) -> BotModel:
        """Load from a LightGBM text model and the metadata JSON written at training time."""
        meta = json.loads(Path(metadata_file).read_text())
        # LightGBM imports sklearn and scipy (about 2 s of CPU): only a process that reads a
        # booster pays it, not `botfilter score`'s main process, which ships files to workers.
        import lightgbm as lgb

        return cls.from_metadata(lgb.Booster(model_file=str(model_file)), meta, version, threads)

    def compile(self, cache_dir: Path | None) -> None:
        """Compile the trees: lleaves for raw scores, C for scores with reasons (both cached).

        Without a compiler, LightGBM predicts and the tree walker explains: same answers, slower.
        """
        if cache_dir is None:
            return
        # Keyed by content, never by label: another registry's botfilter/1 is another model.
        safe = self.model_id.replace(":", "-")
        self._compiled = compile_trees(self.booster, cache_dir, safe, "trees")
        if self.kind is not None:
            self.kind.compile(cache_dir, safe)
        if self.provisional is not None:
            # Compiled when first asked for many rows (:meth:`_early`): it answers a batch's last
            # minutes and the API's small requests, which the tree walker scores as fast, and
            # compiling it doubled every model load (about 9 s).
            self.provisional._compile_to = cache_dir
        self._explainer = None
        try:
            fmap = self.feature_map(list(FEATURE_NAMES))
            self._explainer = compile_explainer(self.trees, fmap, len(FEATURE_NAMES), cache_dir)
        except Exception as exc:  # the walker gives the same answers, only slower
            log.warning("compiled reasons unavailable (%s); using the tree walker", exc)

    # --- scoring -----------------------------------------------------------------------------
    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        """The model's input matrix (float64, C order), columns in the model's own feature order."""
        if list(features.columns) != self.feature_names:
            missing = [f for f in self.feature_names if f not in features.columns]
            if missing:
                raise ValueError(f"features missing for the model: {', '.join(missing)}")
            features = features[self.feature_names]
        return np.ascontiguousarray(features.to_numpy(), dtype=np.float64)

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Raw (log-odds) scores."""
        if len(X) == 0:
            return np.zeros(0)
        if self._compiled is not None:
            return np.asarray(self._compiled.predict(X, n_jobs=self.threads), dtype=np.float64)
        return np.asarray(
            self.booster.predict(X, raw_score=True, num_threads=self.threads), dtype=np.float64
        )

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated bot probabilities from raw scores."""
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * raw + b)))

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated bot probability per row (a pending row's from :attr:`provisional`)."""
        pending = self._pending(features, list(features.columns))
        if pending is None:
            return self.calibrate(self.raw_score(self.matrix(features)))
        assert self.provisional is not None
        out = np.empty(len(features))
        out[~pending] = self.calibrate(self.raw_score(self.matrix(features.loc[~pending])))
        out[pending] = self.provisional.predict_proba(features.loc[pending])
        return out

    def _pending(self, rows: Any, names: list[str]) -> np.ndarray | None:
        """Which rows wait for their look-ahead window (its features missing), if any does and
        a provisional head can answer them; ``rows`` is a frame with columns ``names`` or a
        (features x rows) block with rows ``names``."""
        if self.provisional is None or LOOKAHEAD_FEATURES[0] not in names:
            return None
        if isinstance(rows, pd.DataFrame):
            first = rows[LOOKAHEAD_FEATURES[0]].to_numpy(dtype=np.float64)
        else:
            first = rows[names.index(LOOKAHEAD_FEATURES[0])]
        pending = np.isnan(first)
        return pending if pending.any() else None

    def threshold_for(
        self, channel: np.ndarray, event_type: np.ndarray, vendor: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-row threshold by (channel, type), falling back to the default one; never below
        ``MIN_CUT``. Rows from a security vendor's address (``vendor``) take the higher cut of
        their (channel, type) where the model has one (:func:`vendor_key`)."""
        cuts = self._base_cuts(channel, event_type)
        if vendor is None:
            return cuts
        for ch, ty, floor in self._cuts[2]:
            rows = vendor & (np.asarray(channel) == ch) & (np.asarray(event_type) == ty)
            cuts[rows] = np.maximum(cuts[rows], floor)
        return cuts

    def flags(self, proba: np.ndarray, ctx: pd.DataFrame, features: pd.DataFrame) -> np.ndarray:
        """``is_bot`` for scores ``proba`` of events ``ctx`` (channel, type) with ``features``
        (rows aligned): each row against its own cut, a security vendor's included."""
        channel, event_type = ctx["channel"].to_numpy(), ctx["type"].to_numpy()
        return np.asarray(proba >= self.threshold_for(channel, event_type, vendor_rows(features)))

    def _base_cuts(self, channel: np.ndarray, event_type: np.ndarray) -> np.ndarray:
        """Per-row threshold by (channel, type) alone (:meth:`threshold_for`)."""
        src, floored, _ = self._cuts
        if src is not self.thresholds:  # floored (and the vendor keys parsed) once per dict
            floored = {k: max(float(v), MIN_CUT) for k, v in self.thresholds.items()}
            vendor = tuple(
                (ch, ty, cut)
                for k, cut in floored.items()
                if k.endswith(_VENDOR_SUFFIX)
                for ch, _, ty in [k.removesuffix(_VENDOR_SUFFIX).partition(":")]
            )
            self._cuts = (self.thresholds, floored, vendor)
        default = floored.get("default", MIN_CUT)
        if len(channel) <= 64:
            # A few rows (online requests): a dict per pair costs less than two factorizes.
            found: dict[tuple[Any, Any], float] = {}
            cuts = []
            pairs = zip(np.asarray(channel).tolist(), np.asarray(event_type).tolist(), strict=True)
            for ch, ty in pairs:
                cut = found.get((ch, ty))
                if cut is None:  # (a missing value makes a key no threshold has: the default)
                    cut = found[ch, ty] = floored.get(threshold_key(ch, ty), default)
                cuts.append(cut)
            return np.array(cuts, dtype=np.float64)
        ch_codes, channels = pd.factorize(np.asarray(channel, dtype=object))
        ty_codes, types = pd.factorize(np.asarray(event_type, dtype=object))
        # One cell per (channel, type) seen; the extra last row/column is what a missing
        # value's code -1 picks.
        table = np.full((len(channels) + 1, len(types) + 1), default, dtype=np.float64)
        for i, ch in enumerate(channels):
            for j, ty in enumerate(types):
                table[i, j] = floored.get(threshold_key(ch, ty), default)
        return table[ch_codes, ty_codes]

    @property
    def trees(self) -> FlatTrees:
        if self._trees is None:
            self._trees = flatten(self.booster)
        return self._trees

    def feature_map(self, columns: list[str], wanted: list[str] | None = None) -> np.ndarray:
        """For each model feature (or each of ``wanted``), its position in ``columns``; an error
        names any missing."""
        wanted = self.feature_names if wanted is None else wanted
        key = (tuple(columns), tuple(wanted))
        cached = self._fmaps.get(key)
        if cached is None:
            where = {name: j for j, name in enumerate(columns)}
            missing = [f for f in wanted if f not in where]
            if missing:
                raise ValueError(f"features missing for the model: {', '.join(missing)}")
            cached = np.asarray([where[f] for f in wanted], dtype=np.int64)
            self._fmaps[key] = cached
        return cached

    def score_block(
        self,
        block: np.ndarray,
        channel: np.ndarray,
        event_type: np.ndarray,
        rows: np.ndarray | None = None,
        with_reasons: bool = True,
        names: list[str] | None = None,
    ) -> ScoredRows:
        """Score the columns ``rows`` (default all) of a (features x rows) block.

        ``names`` are the block's row names (default ``features.definitions.FEATURE_NAMES``, the
        layout :func:`features.pipeline.feature_block` returns); ``channel`` and ``event_type``
        are given for the scored columns. With reasons, one walk of the trees gives the score and
        the reasons; without, the compiled trees score row-major chunks.
        """
        names = list(FEATURE_NAMES) if names is None else list(names)
        if rows is not None:
            block = block[:, np.asarray(rows, dtype=np.int64)]
        if block.dtype not in (np.float32, np.float64):
            block = block.astype(np.float64)
        pending = self._pending(block, names)
        if pending is None:
            return self._score_columns(block, channel, event_type, with_reasons, names)
        assert self.provisional is not None
        if pending.all():  # the online API's usual request: every event just arrived
            return self._early(block, channel, event_type, with_reasons, names)
        channel, event_type = np.asarray(channel), np.asarray(event_type)
        early = self._early(
            block[:, pending], channel[pending], event_type[pending], with_reasons, names
        )
        if pending.sum() * 4 <= len(pending):
            # A batch's usual part: a few rows of its tenants' last minutes wait. Scoring every
            # column and overwriting those spares copying the rest of the block (400 MB per
            # million rows).
            out = self._score_columns(block, channel, event_type, with_reasons, names)
            out.put(pending, early)
            return out
        done = ~pending
        final = self._score_columns(
            block[:, done], channel[done], event_type[done], with_reasons, names
        )
        return ScoredRows.merged(len(pending), (done, final), (pending, early))

    def compile_provisional(self) -> None:
        """Compile the provisional head now, if :meth:`compile` left it for later: the online
        API answers nearly every event with it, so it compiles it at start."""
        head = self.provisional
        if head is not None and head._compiled is None and head._compile_to is not None:
            head.compile(head._compile_to)
            head._compile_to = None

    def _early(
        self,
        block: np.ndarray,
        channel: np.ndarray,
        event_type: np.ndarray,
        with_reasons: bool,
        names: list[str],
    ) -> ScoredRows:
        """The provisional head's answer for every column of ``block``."""
        head = self.provisional
        assert head is not None
        if block.shape[1] >= PROVISIONAL_COMPILE_FROM:
            self.compile_provisional()
        # The kind head is this model's: a provisional bot is still some kind of bot.
        early = head._score_columns(block, channel, event_type, with_reasons, names, self.kind)
        # Reason codes number each model's own feature list: the head's are kept apart.
        early.reason_codes = -early.reason_codes
        return early

    def _score_columns(
        self,
        block: np.ndarray,
        channel: np.ndarray,
        event_type: np.ndarray,
        with_reasons: bool,
        names: list[str],
        kind: KindHead | None = None,
    ) -> ScoredRows:
        """The body of :meth:`score_block`: this model's own answer for every column (kinds
        by ``kind``, default its own head)."""
        kind = self.kind if kind is None else kind
        names_default = names == list(FEATURE_NAMES)
        fmap = self.feature_map(names)
        vendor = block[names.index(SECURITY_VENDOR)] > 0 if SECURITY_VENDOR in names else None
        cut = self.threshold_for(channel, event_type, vendor)
        n = block.shape[1]
        if with_reasons and n:
            if self._explainer is not None and block.dtype == np.float32 and names_default:
                proba, idx = self._explainer(block, self.calibration, cut, threads=self.threads)
            else:
                proba, idx = score_block(self.trees, block, fmap, self.calibration, cut)
            codes = reason_codes(idx, len(self.feature_names))
            reasons = lists_of_codes(codes, idx.shape[1], self.feature_names)
        else:
            proba = np.empty(n, dtype=np.float64)
            for lo in range(0, n, _CHUNK):
                # Row-major float64 chunks small enough to stay in cache while transposed.
                chunk = np.ascontiguousarray(block[fmap, lo : lo + _CHUNK].T, dtype=np.float64)
                proba[lo : lo + _CHUNK] = self.calibrate(self.raw_score(chunk))
            reasons = np.empty(n, dtype=object)
            reasons.fill([])  # one shared empty list: rows' reasons are read-only
            codes = np.zeros(n, dtype=np.int64)  # code 0: no reason
        is_bot = proba >= cut
        kind_map = fmap
        if kind is not None and kind.feature_names != self.feature_names:
            kind_map = self.feature_map(names, kind.feature_names)
        kinds = bot_kinds(kind, is_bot, reasons, block, kind_map, channel)
        return ScoredRows(proba, is_bot, reasons, kinds, codes)

    def score(
        self,
        event_ids: pd.Series,
        channel: pd.Series,
        event_type: pd.Series,
        features: pd.DataFrame,
        with_reasons: bool = True,
    ) -> pd.DataFrame:
        """The scores table of PRODUCT.md for these rows, in their order."""
        # build_features' frames are views of a (features x rows) block: .T gives it back.
        block = features.to_numpy().T
        scored = self.score_block(
            block,
            channel.to_numpy(),
            event_type.to_numpy(),
            with_reasons=with_reasons,
            names=list(features.columns),
        )
        return scored.table(event_ids.to_numpy(dtype=object), self.version)


@dataclass
class ScoredRows:
    """Scores of a block's columns, in order."""

    bot_score: np.ndarray  # calibrated probability, float64
    is_bot: np.ndarray  # bool, bot_score >= the row's (channel, type) threshold
    reasons: np.ndarray  # object array of lists of feature names
    bot_kind: np.ndarray  # object array: a BOT_KINDS name for bots, "" for people
    # int64, equal for equal reasons (scoring.explain.reason_codes): Arrow converts each
    # distinct list once
    reason_codes: np.ndarray

    @classmethod
    def empty(cls, n: int) -> ScoredRows:
        """``n`` rows to fill with :meth:`put`."""
        return cls(
            np.empty(n),
            np.empty(n, dtype=bool),
            np.empty(n, dtype=object),
            np.empty(n, dtype=object),
            np.empty(n, dtype=np.int64),
        )

    def put(self, rows: np.ndarray, part: ScoredRows) -> None:
        """Write ``part``'s rows at ``rows`` (positions or a mask)."""
        self.bot_score[rows] = part.bot_score
        self.is_bot[rows] = part.is_bot
        self.reasons[rows] = part.reasons
        self.bot_kind[rows] = part.bot_kind
        self.reason_codes[rows] = part.reason_codes

    @classmethod
    def merged(cls, n: int, *parts: tuple[np.ndarray, ScoredRows]) -> ScoredRows:
        """``n`` rows from parts, each scored for the rows its mask selects."""
        out = cls.empty(n)
        for mask, part in parts:
            out.put(mask, part)
        return out

    def table(
        self, event_ids: np.ndarray, model_version: str, tenant_ids: np.ndarray | None = None
    ) -> pd.DataFrame:
        """The scores table of PRODUCT.md: these rows with their event ids and the version, and
        their ``tenant_id`` when given (an event is (tenant_id, event_id))."""
        columns = {
            "event_id": event_ids,
            "bot_score": self.bot_score,
            "is_bot": self.is_bot,
            "reasons": self.reasons,
            "model_version": model_version,
            "bot_kind": self.bot_kind,
        }
        if tenant_ids is None:
            return pd.DataFrame(columns, columns=list(SCORE_COLUMNS))
        return pd.DataFrame(
            columns | {"tenant_id": tenant_ids},
            columns=[SCORE_COLUMNS[0], "tenant_id", *SCORE_COLUMNS[1:]],  # as files have it
        )

    def arrow_table(
        self,
        event_ids: np.ndarray | pa.Array,
        model_version: str,
        tenant_ids: np.ndarray | None = None,
    ) -> pa.Table:
        """:meth:`table` as Arrow, in the schema of a scores file, without the pandas frame.

        Converting the frame built every row's Python objects anew (the version string, the
        reasons lists): a tenth of a scoring worker's CPU. Repeated values are converted once
        here and repeated by Arrow.
        """
        schema = scores_arrow_schema(tenant_ids is not None)
        n = len(self.bot_score)
        columns = {
            "event_id": event_ids.cast(pa.string())
            if isinstance(event_ids, pa.Array)
            else pa.array(event_ids, pa.string(), from_pandas=True),
            "bot_score": pa.array(self.bot_score, pa.float64()),
            "is_bot": pa.array(self.is_bot, pa.bool_()),
            "reasons": _distinct_once(
                self.reasons, self.reason_codes, schema.field("reasons").type
            ),
            "model_version": pa.repeat(pa.scalar(model_version, pa.string()), n),
            "bot_kind": pa.array(self.bot_kind, pa.string()),
        }
        if tenant_ids is not None:
            columns["tenant_id"] = _runs_once(tenant_ids, pa.string())
        return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def _distinct_once(values: np.ndarray, codes: np.ndarray, type_: pa.DataType) -> pa.Array:
    """``values`` as Arrow, converting one row per distinct ``codes`` (equal codes: equal
    values) and repeating it by Arrow's take."""
    inverse, uniques = pd.factorize(codes)
    first = np.empty(len(uniques), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write is the first row
    distinct = pa.array(list(values[first]), type_, from_pandas=True)
    return distinct.take(pa.array(inverse.astype(np.int32, copy=False)))


def _runs_once(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """An object array as Arrow; when it is a few runs of equal values (a part's tenants), each
    run's value is converted once (:func:`_distinct_once`, a run's number as its code)."""
    change = values[1:] != values[:-1]
    if len(values) == 0 or int(change.sum()) > len(values) // 8:
        return pa.array(values, type_, from_pandas=True)
    return _distinct_once(values, np.concatenate(([0], np.cumsum(change))), type_)
