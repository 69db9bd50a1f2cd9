"""A Dawid-Skene label model: EM over the votes of the labelling functions.

Each function j is described by its confusion matrix ``P(vote_j = v | class = c)`` over the three
votes v in (abstain, human, bot); the functions are assumed conditionally independent given the
class. EM alternates each event's class posterior (E-step) with the class prior and the confusion
matrices (M-step). Abstaining is a vote like any other: a function that fires on a quarter of the
bots and on almost no people carries that information in how often it abstains for each class.

The latent classes are kinds of people (the first ``human_classes``) and kinds of bot. Bots of
different kinds set off disjoint functions (Apple's prefetch never hits a honeypot, scanners never
send the bare ``Mozilla/5.0`` from Apple's relay), and so do people's opens and clicks; inside a
single "bot" and a single "human" class that breaks conditional independence badly enough that EM
explains a whole kind of bot as people (or the other way round). One class per kind, with each
function pointing at the kind it was written for (or at any kind of its side), keeps independence
plausible within each class and fixes what each class means from the start.

Why not snorkel's LabelModel: it pulls in torch (hundreds of MB) for a fit that is a few numpy
lines on our 10-20 functions, and its pins lag the project's numpy/pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ABSTAIN, HUMAN, BOT = -1, 0, 1
ANY = -1  # a function's target class when it fires on every kind of its side
_COL = {ABSTAIN: 0, HUMAN: 1, BOT: 2}  # vote -> column of the confusion matrices


@dataclass
class LabelModel:
    """Dawid-Skene over ``classes`` latent classes: 0..human_classes-1 people, then bots."""

    classes: int = 2
    human_classes: int = 1
    prior: np.ndarray = field(default_factory=lambda: np.zeros(0))  # P(class)
    # (functions, classes, 3 votes): P(vote | class); rows sum to 1.
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3)))
    iterations: int = 0
    converged: bool = False

    def fit(
        self,
        votes: np.ndarray,
        targets: np.ndarray | None = None,
        max_iter: int = 300,
        tol: float = 1e-7,
        smoothing: float = 0.1,
    ) -> LabelModel:
        """Fit on an (events x functions) int array of -1/0/1 votes.

        ``targets[j]`` is the class function j was written for, or ``ANY`` (the default for all):
        any class of the side it votes for; it only shapes the starting point. ``smoothing`` is a Dirichlet
        pseudo-count per cell, so a vote never seen for a class keeps a small probability
        instead of an exact zero that would veto the class.
        """
        if not 1 <= self.human_classes < self.classes:
            raise ValueError("a label model needs at least one human and one bot class")
        votes = _check(votes)
        m = votes.shape[1]
        targets = np.full(m, ANY) if targets is None else np.asarray(targets)
        if targets.shape != (m,) or not np.isin(targets, [ANY, *range(self.classes)]).all():
            raise ValueError(
                f"targets must name a class 0..{self.classes - 1} (or ANY) per function"
            )
        # EM runs over the distinct vote patterns, weighted by how often each occurs: a few
        # hundred patterns stand for a million events.
        patterns, counts = np.unique(votes, axis=0, return_counts=True)
        onehot = _onehot(patterns)  # (patterns, m, 3)
        weight = counts.astype(np.float64)
        post = self._start(patterns, targets)
        prev = None
        for it in range(1, max_iter + 1):
            self._m_step(onehot, post, weight, smoothing)
            post = self._posterior(onehot)
            ll = self._log_likelihood(onehot, weight)
            self.iterations = it
            if prev is not None and abs(ll - prev) <= tol * max(1.0, abs(prev)):
                self.converged = True
                break
            prev = ll
        return self

    def predict_proba(self, votes: np.ndarray) -> np.ndarray:
        """P(bot) for each event: the posterior mass of every bot class."""
        return self.predict_classes(votes)[:, self.human_classes :].sum(axis=1)

    def predict_classes(self, votes: np.ndarray) -> np.ndarray:
        """(events x classes) posterior."""
        patterns, inverse = np.unique(_check(votes), axis=0, return_inverse=True)
        return self._posterior(_onehot(patterns))[inverse.reshape(-1)]

    @property
    def bot_prior(self) -> float:
        """Estimated share of bots."""
        return float(self.prior[self.human_classes :].sum())

    def accuracy(self) -> np.ndarray:
        """Each function's estimated accuracy: P(its vote is right | it did not abstain)."""
        # P(vote = v, class = c) for v in (human, bot)
        joint = self.confusion[:, :, 1:] * self.prior[None, :, None]
        h = self.human_classes
        right = joint[:, :h, 0].sum(axis=1) + joint[:, h:, 1].sum(axis=1)
        fired = joint.sum(axis=(1, 2))
        return np.where(fired > 0, right / np.maximum(fired, 1e-300), np.nan)

    def _start(self, patterns: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Majority vote, with each vote's weight spread over the classes it targets."""
        k, h = self.classes, self.human_classes
        resp = np.zeros((len(patterns), k))
        for j, target in enumerate(targets):
            for vote, side in ((HUMAN, slice(0, h)), (BOT, slice(h, k))):
                fires = patterns[:, j] == vote
                if target == ANY:
                    resp[fires, side] += 1.0 / len(range(k)[side])
                else:
                    resp[fires, target] += 1.0
        resp += 0.1 / k  # every class stays possible; all-abstain patterns start uniform
        return resp / resp.sum(axis=1, keepdims=True)

    def _m_step(
        self, onehot: np.ndarray, post: np.ndarray, weight: np.ndarray, smoothing: float
    ) -> None:
        w = post * weight[:, None]  # (patterns, classes)
        self.prior = np.clip(w.sum(axis=0) / max(weight.sum(), 1e-300), 1e-9, None)
        self.prior /= self.prior.sum()
        counts = np.einsum("nc,nmv->mcv", w, onehot) + smoothing
        self.confusion = counts / counts.sum(axis=2, keepdims=True)

    def _log_joint(self, onehot: np.ndarray) -> np.ndarray:
        ll = np.einsum("nmv,mcv->nc", onehot, np.log(self.confusion))
        return ll + np.log(self.prior)[None, :]

    def _posterior(self, onehot: np.ndarray) -> np.ndarray:
        lj = self._log_joint(onehot)
        lj -= lj.max(axis=1, keepdims=True)
        p = np.exp(lj)
        return p / p.sum(axis=1, keepdims=True)

    def _log_likelihood(self, onehot: np.ndarray, weight: np.ndarray) -> float:
        lj = self._log_joint(onehot)
        top = lj.max(axis=1)
        return float(((top + np.log(np.exp(lj - top[:, None]).sum(axis=1))) * weight).sum())


def _check(votes: np.ndarray) -> np.ndarray:
    votes = np.asarray(votes)
    if votes.ndim != 2:
        raise ValueError("votes must be a 2-D (events x functions) array")
    if votes.size and not np.isin(votes, (ABSTAIN, HUMAN, BOT)).all():
        raise ValueError("votes must be -1 (abstain), 0 (human) or 1 (bot)")
    return votes.astype(np.int8, copy=False)


def _onehot(votes: np.ndarray) -> np.ndarray:
    out = np.zeros((*votes.shape, 3), dtype=np.float64)
    for v, col in _COL.items():
        out[..., col] = votes == v
    return out
