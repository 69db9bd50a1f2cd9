"""The scoring model: a LightGBM booster plus what the MLflow run logged with it.

A ``BotModel`` carries its feature list, Platt calibration and per-(channel, type) thresholds, so
whoever loads it (CLI, API, jobs, Spark executors) scores the same way. Raw scores come from
compiled trees (lleaves) when available, else from LightGBM itself.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from contract.schema import SCORE_COLUMNS
from scoring.explain import FlatTrees, flatten, top_reasons

log = logging.getLogger(__name__)
METADATA_FILE = "botfilter_model.json"


def threshold_key(channel: str, event_type: str) -> str:
    """Key of a per-(channel, type) threshold, e.g. ``email:click``."""
    return f"{channel}:{event_type}"


@dataclass
class BotModel:
    """A calibrated, thresholded LightGBM bot classifier."""

    booster: lgb.Booster
    feature_names: list[str]
    calibration: tuple[float, float]  # Platt: p = sigmoid(a * raw + b)
    thresholds: dict[str, float]  # threshold_key -> threshold; "default" as fallback
    version: str = "unregistered"
    threads: int = 2
    _compiled: Any = field(default=None, repr=False)
    _trees: FlatTrees | None = field(default=None, repr=False)

    # --- persistence -------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Everything besides the trees, as logged next to the model in MLflow."""
        return {
            "feature_names": self.feature_names,
            "calibration": list(self.calibration),
            "thresholds": self.thresholds,
        }

    @classmethod
    def from_files(
        cls, model_file: Path, metadata_file: Path, version: str, threads: int = 2
    ) -> BotModel:
        """Load from a LightGBM text model and the metadata JSON written at training time."""
        meta = json.loads(Path(metadata_file).read_text())
        booster = lgb.Booster(model_file=str(model_file))
        a, b = meta["calibration"]
        return cls(
            booster,
            list(meta["feature_names"]),
            (float(a), float(b)),
            dict(meta["thresholds"]),
            version,
            threads,
        )

    def compile(self, cache_dir: Path | None) -> None:
        """Compile the trees with lleaves (cached per version); keeps LightGBM if that fails."""
        try:
            import lleaves

            if cache_dir is None:
                return
            cache_dir.mkdir(parents=True, exist_ok=True)
            safe = "".join(ch if ch.isalnum() else "_" for ch in self.version)
            model_txt = cache_dir / f"{safe}.txt"
            self.booster.save_model(str(model_txt))
            compiled = lleaves.Model(model_file=str(model_txt))
            compiled.compile(cache=str(cache_dir / f"{safe}.so"), raw_score=True)
            self._compiled = compiled
        except Exception as exc:  # a missing compiler must not stop scoring
            log.warning("compiled trees unavailable (%s); using LightGBM predict", exc)
            self._compiled = None

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
        return self.booster.predict(X, raw_score=True, num_threads=self.threads)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated bot probabilities from raw scores."""
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * raw + b)))

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated bot probability per row."""
        return self.calibrate(self.raw_score(self.matrix(features)))

    def threshold_for(self, channel: np.ndarray, event_type: np.ndarray) -> np.ndarray:
        """Per-row threshold by (channel, type), falling back to the default one."""
        channel = np.asarray(channel, dtype=object)
        event_type = np.asarray(event_type, dtype=object)
        out = np.full(len(channel), self.thresholds.get("default", 0.5), dtype=np.float64)
        for key, value in self.thresholds.items():
            if key != "default":
                ch, ty = key.split(":", 1)
                out[(channel == ch) & (event_type == ty)] = value
        return out

    @property
    def trees(self) -> FlatTrees:
        if self._trees is None:
            self._trees = flatten(self.booster)
        return self._trees

    def score(
        self,
        event_ids: pd.Series,
        channel: pd.Series,
        event_type: pd.Series,
        features: pd.DataFrame,
        with_reasons: bool = True,
    ) -> pd.DataFrame:
        """The scores table of PRODUCT.md for these rows, in their order."""
        X = self.matrix(features)
        proba = self.calibrate(self.raw_score(X))
        is_bot = proba >= self.threshold_for(channel.to_numpy(), event_type.to_numpy())
        if with_reasons and len(X):
            reasons = top_reasons(self.trees, X, self.feature_names, is_bot)
        else:
            reasons = [[]] * len(X)  # one shared empty list: rows' reasons are read-only
        return pd.DataFrame(
            {
                "event_id": event_ids.to_numpy(dtype=object),
                "bot_score": proba,
                "is_bot": is_bot,
                "reasons": reasons,
                "model_version": self.version,
            },
            columns=list(SCORE_COLUMNS),
        )
