"""The evaluation report as typed, frozen records.

``training.evaluate.evaluation_report`` builds it; the gate, the CLI, the stress suite and the
notebook read its fields. ``to_dict`` gives the JSON that is saved and logged to MLflow as
``evaluation.json`` (the same keys as before the report was typed), and ``from_dict`` reads it
back, so an already registered version can be promoted from its logged report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np


def json_ready(value: Any) -> Any:
    """``value`` as strict JSON takes it: every NaN or infinity as None (``null``), numpy scalars
    as Python numbers, tuples as lists. Every JSON the training package writes goes through it
    (reports, the gate's decision, the kind confusion, MLflow's dicts, the suite's files): a NaN
    (a rate of nothing: no proxy open, no campaign) was written ``NaN``, which strict parsers
    such as JavaScript's ``JSON.parse`` reject."""
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any) -> str:
    """``value`` as strict JSON text (:func:`json_ready`), indented, as the files are saved."""
    return json.dumps(json_ready(value), indent=2, allow_nan=False)


def _nan_for_null(value: Any) -> Any:
    """What :func:`json_ready` wrote, with its nulls read back as NaN (a report's numbers)."""
    if value is None:
        return float("nan")
    if isinstance(value, Mapping):
        return {k: _nan_for_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_for_null(v) for v in value]
    return value


@dataclass(frozen=True)
class PrecisionRecall:
    """Precision and recall of one filter on ``n`` events, ``bots`` of them bots (NaN when
    nothing was flagged, or there is no bot)."""

    precision: float
    recall: float
    n: int
    bots: int


@dataclass(frozen=True)
class Quality:
    """The model beside the UA-list baseline, on one slice of the events."""

    model: PrecisionRecall
    ua_list: PrecisionRecall

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Quality:
        return cls(PrecisionRecall(**d["model"]), PrecisionRecall(**d["ua_list"]))


@dataclass(frozen=True)
class ChannelTypeQuality:
    """One (channel, type): the model's ranking (PR-AUC) and both filters at the thresholds."""

    pr_auc: float
    model: PrecisionRecall
    ua_list: PrecisionRecall

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChannelTypeQuality:
        q = Quality.from_dict(d)
        return cls(float(d["pr_auc"]), q.model, q.ua_list)


@dataclass(frozen=True)
class Rates:
    """A rate for the model and for the UA list (e.g. the share of people flagged)."""

    model: float
    ua_list: float


@dataclass(frozen=True)
class CountedRates:
    """A rate for the model and for the UA list over ``n`` events."""

    model: float
    ua_list: float
    n: int


@dataclass(frozen=True)
class FamilyRate:
    """The model's rate over the ``n`` events of one simulated family."""

    model: float
    n: int


@dataclass(frozen=True)
class RateError:
    """Per-campaign error against the labels' truth, in percentage points."""

    ctr_mae_pp: float
    ctr_max_pp: float
    open_rate_mae_pp: float
    open_rate_max_pp: float


@dataclass(frozen=True)
class CampaignError:
    """Campaign open rate and CTR error with the model, with no filter, with the UA list."""

    campaigns: int
    model: RateError
    no_filter: RateError
    ua_list: RateError

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CampaignError:
        return cls(
            int(d["campaigns"]),
            RateError(**d["model"]),
            RateError(**d["no_filter"]),
            RateError(**d["ua_list"]),
        )


@dataclass(frozen=True)
class WorldRows:
    """How many events of one world (a data directory, or a world mixed in) a split holds."""

    world: str
    events: int


# Keys that are left out of the JSON when absent (None), as the untyped report left them out.
_OPTIONAL = ("fpr_by_family", "recall_by_family", "test_worlds", "model_version")


@dataclass(frozen=True, kw_only=True)
class EvaluationReport:
    """A model's quality against labels; the field order is the JSON's key order."""

    events: int
    bot_share: float
    pr_auc: float
    overall: Quality
    human_fpr: Rates
    by_channel_type: Mapping[str, ChannelTypeQuality]  # keyed "email:click"
    by_channel: Mapping[str, Quality]
    recall_by_bot_kind: Mapping[str, CountedRates]
    # Only when the data carries the simulator's family tag (evaluation only).
    fpr_by_family: Mapping[str, FamilyRate] | None = None
    recall_by_family: Mapping[str, FamilyRate] | None = None
    proxy_open_fpr: CountedRates
    campaign_metric_error: CampaignError
    # The worlds the rows came from, when `botfilter train --mix` mixed some in (each world is
    # split by its own time, so the test split holds rows of every one)
    test_worlds: Sequence[WorldRows] | None = None
    model_version: str | None = None  # set by `botfilter evaluate`, which names the model

    def with_version(self, version: str) -> EvaluationReport:
        """The same report naming the model it judged."""
        return replace(self, model_version=version)

    def with_worlds(self, worlds: Sequence[WorldRows]) -> EvaluationReport:
        """The same report saying which worlds its rows came from."""
        return replace(self, test_worlds=tuple(worlds))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and numbers, as saved and logged (``evaluation.json``); a number
        that is not one (NaN: a rate of nothing) is ``null`` (:func:`json_ready`)."""
        d = json_ready(asdict(self))
        return {k: v for k, v in d.items() if not (k in _OPTIONAL and v is None)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> EvaluationReport:
        """Read back what :meth:`to_dict` wrote (its nulls as NaN)."""
        d = {k: v if k in _OPTIONAL else _nan_for_null(v) for k, v in doc.items()}

        def families(key: str) -> dict[str, FamilyRate] | None:
            return None if key not in d else {k: FamilyRate(**v) for k, v in d[key].items()}

        return cls(
            events=int(d["events"]),
            bot_share=float(d["bot_share"]),
            pr_auc=float(d["pr_auc"]),
            overall=Quality.from_dict(d["overall"]),
            human_fpr=Rates(**d["human_fpr"]),
            by_channel_type={
                k: ChannelTypeQuality.from_dict(v) for k, v in d["by_channel_type"].items()
            },
            by_channel={k: Quality.from_dict(v) for k, v in d["by_channel"].items()},
            recall_by_bot_kind={k: CountedRates(**v) for k, v in d["recall_by_bot_kind"].items()},
            fpr_by_family=families("fpr_by_family"),
            recall_by_family=families("recall_by_family"),
            proxy_open_fpr=CountedRates(**d["proxy_open_fpr"]),
            campaign_metric_error=CampaignError.from_dict(d["campaign_metric_error"]),
            test_worlds=None
            if d.get("test_worlds") is None
            else tuple(WorldRows(**w) for w in d["test_worlds"]),
            model_version=d.get("model_version"),
        )
