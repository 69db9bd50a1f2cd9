"""One worker's scoring runtime: the champion model, the enrichers, the window state.

The BentoML service builds one per worker process (:func:`start`); the HTTP layer reaches it
through :func:`current`. The model is swapped by :meth:`Runtime.reload` without stopping
requests: a micro-batch takes the model reference once, so it is scored by one model, old or new.
``/reload`` on one worker bumps a generation counter in the shared state; every other worker sees
it on its next request (checked at most once a second) and loads the new champion in the
background, answering with the old one meanwhile.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from core.redact import one_line
from core.settings import Settings
from core.tokens import TokenCache, TokenStore
from features.pipeline import Enrichers
from jobs.lists.apply import ANSWER_FIELDS, ListCache, apply_to_answers
from scoring.model import BotModel
from scoring.registry import load_model
from serving.batching import Coalescer
from serving.models import EXAMPLE_EVENTS
from serving.prometheus import metrics
from serving.recorder import ScoreRecorder, store_opener
from serving.scorer import (
    ROW_FORMAT,
    OnlineScorer,
    burst_retention_s,
    history_retention_s,
)
from serving.state import MemoryState, WindowState, make_state

log = logging.getLogger("botfilter.serving")
GENERATION_CHECK_S = 1.0
SWITCH_INTERVAL_S = 0.0005
FOLLOW_S = 0.05  # how often a worker replays what others logged, requests or not
READY_CACHE_S = 1.0  # how long a readiness answer stands

_CURRENT: Runtime | None = None


def current() -> Runtime | None:
    """The runtime of this process, once the service has started."""
    return _CURRENT


def set_current(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one the HTTP layer uses (the service does this at start)."""
    global _CURRENT
    _CURRENT = runtime


def state_prefix(settings: Settings) -> str:
    """Redis key prefix: per registered model name and stored-row format."""
    return f"botfilter:{settings.model_name}:{ROW_FORMAT}:"


@dataclass(frozen=True)
class Reloaded:
    """What a reload did."""

    model_version: str
    previous_version: str | None
    changed: bool


class Runtime:
    """Everything one worker needs to answer ``/score``."""

    def __init__(
        self,
        settings: Settings,
        model: BotModel,
        enrichers: Enrichers,
        state: WindowState,
        loader: Any = None,
        auth: TokenCache | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth if auth is not None else make_auth(settings)
        self.enrichers = enrichers
        self.state = state
        self._model = model
        self._loader = loader or _load_champion
        self.scorer = OnlineScorer(state, enrichers, settings.threads)
        self._batcher: Coalescer[dict[str, Any], dict[str, Any]] = Coalescer(
            self._score_merged, settings.max_batch_events
        )
        self._reload_lock = threading.Lock()
        self._generation = state.generation()
        self._checked = time.monotonic()
        self._following = False
        self._readiness: tuple[float, str | None] | None = None
        self.recorder: ScoreRecorder | None = None  # score once: answers go to the store
        self.lists: ListCache | None = None  # tenant allow/block lists, applied to answers

    # -- model ---------------------------------------------------------------------------------
    @property
    def model(self) -> BotModel:
        return self._model

    def reload(self) -> Reloaded:
        """Load the current champion and swap it in; other workers follow (shared state)."""
        with self._reload_lock:
            previous = self._model.version
            new = self._loader(self.settings)
            self._model = new
            self._generation = self.state.bump_generation()
        log.info("model reloaded: %s -> %s", previous, new.version)
        return Reloaded(new.version, previous, new.version != previous)

    def _follow_generation(self) -> None:
        """Pick up a reload done by another worker (at most one check a second)."""
        now = time.monotonic()
        if now - self._checked < GENERATION_CHECK_S or self._following:
            return
        self._checked = now
        generation = self.state.generation()
        if generation == self._generation:
            return
        self._following = True

        def follow() -> None:
            try:
                with self._reload_lock:
                    new = self._loader(self.settings)
                    self._model = new
                    self._generation = generation
                log.info("model followed reload to %s", new.version)
            except Exception as exc:  # keep serving the old model; retry on a later request
                # One line, secrets masked: the reason may hold the registry's URI.
                log.warning(
                    "could not load the new champion; keeping %s: %s",
                    self._model.version,
                    one_line(repr(exc)),
                )
            finally:
                self._following = False

        threading.Thread(target=follow, name="botfilter-reload", daemon=True).start()

    # -- scoring -------------------------------------------------------------------------------
    def score(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One answer per event, in order (merged with concurrent requests under load)."""
        self._follow_generation()
        return self._batcher.submit(items)

    def score_if_idle(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """:meth:`score` done at once on this thread, or None (nothing done) when the scorer is
        busy or the state would wait on the network: the event loop calls this, and must never
        be held up by Redis."""
        if not self.state.local:
            return None
        self._follow_generation()
        return self._batcher.submit_if_idle(items)

    def _score_merged(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = self._model  # the answers and their record name the same model
        out = self.scorer.score(items, model)
        # Every step after scoring reads the contract's clean values, never the raw items: a
        # refused item may carry anything, and a kept one text the contract trimmed (a padded
        # tenant id) or made of an object (a user agent sent as JSON).
        if self.recorder is not None:  # the model's answers: the lists apply at recompute too
            self.recorder.record(out.recorded_times(), out.items, model)
        if self.lists is not None:
            entries = self.lists.of(out.tenants())
            if entries:
                cleaned = out.cleaned(ANSWER_FIELDS)
                out.items = apply_to_answers(cleaned, out.items, entries, self._asn)
        m = metrics()
        m.outcome(out.scored, out.flagged, out.duplicates, out.errors)
        m.scoring_call(len(items), out.seconds)
        return out.items

    def _asn(self, ips: Any, asns: Any) -> Any:
        """ASNs of the request's events, as the features resolve them."""
        return self.enrichers.ip.enrich(ips, asns)["asn"]

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether this worker can answer ``/score`` now, and the ``/readyz`` body.

        Not ready while the shared state cannot be reached (every ``/score`` would get 503): a
        load balancer must stop sending traffic here. The answer is kept ``READY_CACHE_S``, so
        a flood of probes costs one ping. The body names the kind of state, never its host
        (``/readyz`` needs no token)."""
        now = time.monotonic()
        known = self._readiness
        if known is None or now - known[0] >= READY_CACHE_S:
            why = self.state.unready()
            if why is not None and (known is None or known[1] is None):
                log.warning("not ready: %s", why)
            known = self._readiness = (now, why)
        body = {"model_version": self._model.version, "state": self.state.kind}
        if known[1] is not None:
            return False, {"status": "not ready: the shared window state cannot be reached", **body}
        return True, {"status": "ready", **body}

    def close(self) -> None:
        """Write the recorded answers still queued; release the state's and the token store's
        connections."""
        if self.recorder is not None:
            self.recorder.close()
        self.state.close()
        if self.auth.store is not None:
            self.auth.store.close()


def make_auth(settings: Settings) -> TokenCache:
    """Token checks for a worker: the token table of the metrics store database, and
    ``BOTFILTER_API_TOKEN`` as an admin token."""
    static = settings.api_token.get_secret_value() if settings.api_token else None
    return TokenCache(TokenStore.open(settings), static=static)


def _load_champion(settings: Settings) -> BotModel:
    model = load_model(settings)
    model.compile_provisional()  # it answers nearly every event here (features.LOOKAHEAD_S)
    return model


def make_runtime_state(settings: Settings) -> WindowState:
    """The window state the settings ask for (Redis when ``redis_url`` is set)."""
    return make_state(
        settings.redis_url,
        history_retention_s(settings.window_days),
        burst_retention_s(),
        state_prefix(settings),
    )


def warm_up(model: BotModel, enrichers: Enrichers) -> None:
    """Score the API's example events once, on a scratch state: the first request then does not
    pay for what loads lazily (compiled kernels, reference tables, Arrow functions)."""
    scratch = MemoryState(history_retention_s(1), burst_retention_s())
    answers = OnlineScorer(scratch, enrichers).score(list(EXAMPLE_EVENTS), model).items
    failed = [a["error"] for a in answers if "error" in a]
    if failed:
        log.warning("warm-up events were refused (%s): the first request will be slow", failed)


def start(settings: Settings) -> Runtime:
    """Load the champion, the enrichers and the state; make this the process's runtime."""
    # BentoML leaves the root logger at WARNING in its workers: this worker's own lines (what
    # it loaded and replayed, reloads) would never show.
    logging.getLogger("botfilter").setLevel(settings.log_level)
    model = _load_champion(settings)
    enrichers = Enrichers.load()
    warm_up(model, enrichers)
    runtime = Runtime(settings, model, enrichers, make_runtime_state(settings))
    if settings.record_scores:
        runtime.recorder = ScoreRecorder(store_opener(settings))
    runtime.lists = ListCache(store_opener(settings))
    runtime.lists.of(set())  # read the lists now, not on the first request
    runtime.state.follow(FOLLOW_S)
    set_current(runtime)
    # Everything loaded so far lives as long as the process: keep it out of every future
    # garbage collection (the reference data alone is hundreds of thousands of objects).
    gc.collect()
    gc.freeze()
    if runtime.state.local:
        # Scoring holds the GIL for long stretches; a shorter switch interval lets the event
        # loop accept and answer requests meanwhile (and so merge them), instead of every 5 ms.
        # With Redis, where every request is scored on a thread that waits on Redis twice, the
        # default measured better (bench/api_latency.py, 1-event p50 5.4 against 12 ms).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    log.info("serving %s with %s state", model.version, runtime.state.describe())
    return runtime
