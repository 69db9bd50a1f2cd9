"""The Dawid-Skene label model recovers known accuracies from synthetic votes."""

from __future__ import annotations

import numpy as np
import pytest

from labelling.model import ABSTAIN, BOT, HUMAN, LabelModel

# (polarity, coverage among the class it votes for, false-fire rate on the other class)
_FUNCTIONS = [
    (BOT, 0.30, 0.002),
    (BOT, 0.50, 0.02),
    (BOT, 0.20, 0.05),
    (BOT, 0.60, 0.01),
    (HUMAN, 0.40, 0.01),
    (HUMAN, 0.70, 0.08),
    (HUMAN, 0.25, 0.004),
]


def _synthetic(n: int, prior: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes of the functions above on n events; their true P(vote | class) matrices."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prior
    votes = np.full((n, len(_FUNCTIONS)), ABSTAIN, dtype=np.int8)
    confusion = np.zeros((len(_FUNCTIONS), 2, 3))
    for j, (pol, cover, false) in enumerate(_FUNCTIONS):
        own = y if pol == BOT else ~y
        rate = np.where(own, cover, false)
        votes[rng.random(n) < rate, j] = pol
        col = 1 + pol  # human -> 1, bot -> 2
        for c, is_own in ((1, pol == BOT), (0, pol == HUMAN)):
            fire = cover if is_own else false
            confusion[j, c, col] = fire
            confusion[j, c, 0] = 1 - fire
    return votes, y, confusion


def test_recovers_known_confusions_prior_and_accuracy() -> None:
    prior = 0.4
    votes, y, truth = _synthetic(200_000, prior)
    model = LabelModel().fit(votes, smoothing=0.0 + 1e-3)
    assert model.converged
    assert model.bot_prior == pytest.approx(prior, abs=0.01)
    np.testing.assert_allclose(model.confusion, truth, atol=0.01)
    # Accuracy of each function, from the known rates.
    p = np.array([1 - prior, prior])
    joint = truth[:, :, 1:] * p[None, :, None]
    true_acc = (joint[:, 0, 0] + joint[:, 1, 1]) / joint.sum(axis=(1, 2))
    np.testing.assert_allclose(model.accuracy(), true_acc, atol=0.01)
    # The posterior labels most events right (those every function abstains on get the prior).
    proba = model.predict_proba(votes)
    covered = (votes != ABSTAIN).any(axis=1)
    assert ((proba[covered] >= 0.5) == y[covered]).mean() > 0.95


def test_all_abstain_gets_the_prior_and_bad_votes_are_refused() -> None:
    votes, _, _ = _synthetic(20_000, 0.3, seed=1)
    model = LabelModel().fit(votes)
    none = np.full((1, votes.shape[1]), ABSTAIN)
    # With every function silent the posterior is the prior reweighted by abstain rates only.
    assert 0.0 < model.predict_proba(none)[0] < 0.5
    with pytest.raises(ValueError, match="votes must be"):
        model.fit(np.array([[2, 0]]))
    with pytest.raises(ValueError, match="2-D"):
        model.fit(np.array([1, 0]))
