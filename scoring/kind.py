"""The kind head: which kind of bot a flagged event is (``contract.schema.BOT_KINDS``).

A LightGBM multiclass booster over the bot model's own features, trained on the labelled bots'
``bot_kind`` (``training.kind``). It travels inside the model's metadata (booster text plus its
classes), so every path that ships a model (MLflow, batch workers, Spark executors) carries it.
It runs only on the rows the bot model flags: people get an empty kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from contract.schema import BOT_KINDS
from scoring.compiled import compile_trees

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger(__name__)

NO_KIND = ""  # the kind of an event that is not a bot
_CHUNK = 16_384  # rows per predict call: the transposed chunk stays small

# Models registered before the kind head (no "kind" in their metadata) still score: their bots'
# kind comes from the strongest reason, by the signal that names the kind best. A bot whose top
# reason names no kind (timing, fan-out, ...) is a security scanner: the common email bot.
_REASON_KIND = {
    "net_apple_relay": "privacy_prefetch",
    "net_google_mail_proxy": "privacy_prefetch",
    "net_yahoo": "privacy_prefetch",
    "ua_mail_proxy": "privacy_prefetch",
    "net_link_preview_range": "link_preview",
    "ua_link_preview": "link_preview",
    "net_crawler_range": "crawler",
    "ua_crawler": "crawler",
}
FALLBACK_KIND = "security_scanner"


def kind_from_reasons(reasons: Any) -> np.ndarray:
    """Fallback kind of each flagged row from its reasons list (strongest first)."""
    return np.array(
        [_REASON_KIND.get(r[0], FALLBACK_KIND) if len(r) else FALLBACK_KIND for r in reasons],
        dtype=object,
    )


@dataclass
class KindHead:
    """A multiclass booster and the kind of each of its classes."""

    booster: lgb.Booster
    classes: list[str]
    # Per channel, the kinds its training bots showed. A kind never seen on a channel is never
    # given there: a bot whose kind signals (UA, network) are new falls back on the kinds of its
    # channel, not on the commonest kind overall (SMS link previews from unknown networks were
    # called security scanners, a kind SMS never had). A channel not listed may get any kind.
    channel_kinds: dict[str, list[str]] = field(default_factory=dict)
    threads: int = 2
    _compiled: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        unknown = [k for k in self.classes if k not in BOT_KINDS]
        if unknown:
            raise ValueError(f"kind head classes not in BOT_KINDS: {', '.join(unknown)}")
        # Its own inputs, by name: the bot model's list as trained, read from the trees.
        self.feature_names: list[str] = list(self.booster.feature_name())
        # Per channel, a mask over classes: 0 where allowed, -inf where never seen.
        self._masks = {
            ch: np.where(np.isin(self.classes, kinds), 0.0, -np.inf)
            for ch, kinds in self.channel_kinds.items()
        }

    def metadata(self) -> dict[str, Any]:
        """What the model's metadata carries under ``kind``."""
        return {
            "classes": list(self.classes),
            "channel_kinds": {ch: list(k) for ch, k in self.channel_kinds.items()},
            "booster": self.booster.model_to_string(),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any] | None, threads: int = 2) -> KindHead | None:
        """The head of a model's metadata; None for a model without one."""
        if not meta:
            return None
        import lightgbm as lgb  # on use: see scoring.model

        booster = lgb.Booster(model_str=meta["booster"])
        channels = {ch: list(k) for ch, k in meta.get("channel_kinds", {}).items()}
        return cls(booster, list(meta["classes"]), channels, threads)

    def compile(self, cache_dir: Path, key: str) -> None:
        """Compile the trees with lleaves (cached under ``key``, the model's content id): the
        head runs on every flagged event of a batch, so it must not cost what LightGBM does."""
        self._compiled = compile_trees(self.booster, cache_dir, f"{key}-kind", "kind trees")

    def predict(self, X: np.ndarray, channel: np.ndarray | None = None) -> np.ndarray:
        """Kind of each row of ``X`` (rows x the head's features, its feature order), among
        the kinds of the row's ``channel`` when given."""
        if len(X) == 0:
            return np.empty(0, dtype=object)
        raw: np.ndarray
        if self._compiled is not None:
            raw = np.asarray(self._compiled.predict(X, n_jobs=self.threads))
        else:
            raw = np.asarray(self.booster.predict(X, raw_score=True, num_threads=self.threads))
        raw = raw.reshape(len(X), len(self.classes))
        if channel is not None and self._masks:
            channel = np.asarray(channel, dtype=object)
            for ch, mask in self._masks.items():
                rows = channel == ch
                if rows.any():
                    raw[rows] += mask
        # argmax of the raw scores is argmax of the softmax
        best = np.argmax(raw, axis=1)
        return np.asarray(self.classes, dtype=object)[best]

    def predict_block(
        self, block: np.ndarray, fmap: np.ndarray, cols: np.ndarray, channel: np.ndarray
    ) -> np.ndarray:
        """Kind of the columns ``cols`` of a (features x rows) block whose head features sit at
        rows ``fmap``; ``channel`` is given for every column of the block."""
        out = np.empty(len(cols), dtype=object)
        for lo in range(0, len(cols), _CHUNK):
            part = cols[lo : lo + _CHUNK]
            X = np.empty((len(part), len(fmap)), dtype=np.float64)
            _gather(block, np.asarray(fmap, dtype=np.int64), part.astype(np.int64), X)
            out[lo : lo + _CHUNK] = self.predict(X, channel[part])
        return out


@numba.njit(cache=True, nogil=True)
def _gather(block: np.ndarray, fmap: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """``out[i, j] = block[fmap[j], cols[i]]``: the rows x features matrix of some columns of a
    (features x rows) block in one pass (numpy's ``block[np.ix_(fmap, cols)].T`` then a float64
    copy took a fifth of the CPU of batch scoring, and held the GIL)."""
    for i in range(cols.shape[0]):
        c = cols[i]
        for j in range(fmap.shape[0]):
            out[i, j] = block[fmap[j], c]


def bot_kinds(
    head: KindHead | None,
    is_bot: np.ndarray,
    reasons: np.ndarray,
    block: np.ndarray,
    fmap: np.ndarray,
    channel: np.ndarray,
) -> np.ndarray:
    """``bot_kind`` of each scored column: empty for people; for bots the head's kind, or
    (a model without a head) the kind its top reason names."""
    kinds = np.full(len(is_bot), NO_KIND, dtype=object)
    bots = np.flatnonzero(is_bot)
    if len(bots):
        if head is not None:
            kinds[bots] = head.predict_block(block, fmap, bots, np.asarray(channel, dtype=object))
        else:
            kinds[bots] = kind_from_reasons(reasons[bots])
    return kinds
