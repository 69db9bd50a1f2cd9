"""Starting the BentoML server for ``botfilter serve``.

Checks happen here, once, before any worker starts, so that a missing champion or an unreachable
Redis is one clear line instead of workers failing in a loop: the champion is loaded (which also
fills the local model cache every worker then reads), Redis is pinged, and more than one worker
without Redis is refused (each worker would see only its own share of the history).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from _bentoml_impl.server.serving import serve_http

from core.errors import BotfilterError
from core.listen import check_listen
from core.settings import Settings
from serving.runtime import _load_champion, make_auth, make_runtime_state

SERVICE = "serving.service:BotfilterService"
# Routes left out of OpenTelemetry tracing unless the operator configures an exporter.
UNTRACED = ("/score", "/healthz", "/readyz")


def check_ready(settings: Settings, workers: int) -> tuple[str, bool]:
    """Validate the configuration and warm the model cache; returns the champion's version
    and whether requests need a token (the token store is opened here, so an unreachable one
    fails now, in one line)."""
    if workers < 1:
        raise BotfilterError("--workers must be at least 1")
    if workers > 1 and not settings.redis_url:
        raise BotfilterError(
            "--workers above 1 needs BOTFILTER_REDIS_URL: workers must share the window state"
        )
    model = _load_champion(settings)
    make_runtime_state(settings).close()
    auth = make_auth(settings)
    try:
        required = auth.required()
    finally:
        if auth.store is not None:
            auth.store.close()
    return model.version, required


def bentoml_overrides(environ: dict[str, str], service: str, access_log: bool) -> dict[str, Any]:
    """BentoML configuration for the workers: the operator's ``BENTOML_CONFIG_OVERRIDES`` plus
    the access log switch, and no tracing of the API's routes unless tracing is configured."""
    overrides = json.loads(environ.get("BENTOML_CONFIG_OVERRIDES") or "{}")
    svc_conf = overrides.setdefault("services", {}).setdefault(service, {})
    svc_conf.setdefault("logging", {}).setdefault("access", {})["enabled"] = access_log
    tracing = svc_conf.setdefault("tracing", {})
    if not tracing.get("exporter_type") and not environ.get("BENTOML_CONFIG"):
        # With no exporter, spans go nowhere, yet creating them costs more than scoring an event.
        tracing.setdefault("excluded_urls", list(UNTRACED))
    return overrides


def prometheus_dir(settings: Settings, host: str, port: int) -> Path:
    """This server's Prometheus multiprocess directory, under the data home.

    BentoML's default is one directory under ``~/bentoml`` for every server on the host, and it
    empties that directory whenever a server starts: a second ``botfilter serve`` wiped the
    first one's ``/metrics`` and then counted its own requests there. BentoML empties this one
    at start too, which only drops a stopped server's leftovers (a port serves one server)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in host)
    path = Path(settings.home).resolve() / "serving" / f"prometheus-{safe}-{port}"
    path.parent.mkdir(parents=True, exist_ok=True)
    BentoMLContainer.prometheus_multiproc_dir.set(str(path))
    return path


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 3000,
    workers: int = 1,
    *,
    blocking: bool = True,
    access_log: bool = True,
) -> Any:
    """Run the API on ``host:port`` with ``workers`` processes (blocks unless ``blocking=False``,
    then returns BentoML's server handle)."""
    # Importing the service module builds the app, so only when serving (no side effects at
    # import).
    from serving.service import bento_service

    version, closed = check_ready(settings, workers)
    check_listen(host, port)
    # Workers inherit the environment: pin the data home so they all resolve the same one.
    os.environ["BOTFILTER_HOME"] = str(Path(settings.home).resolve())
    # Workers share one listening socket, and by default the first one awake accepts every
    # pending connection. libuv's single-accept mode (uvloop) takes one per wake-up, which
    # spreads connections that arrive a few ms apart; a burst opened in the same instant still
    # lands on one worker (measured; see docs/api.md).
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    # Worker processes re-import the service, so BentoML settings for them go through the
    # environment (merged into any overrides the operator set).
    overrides = bentoml_overrides(dict(os.environ), bento_service.name, access_log)
    os.environ["BENTOML_CONFIG_OVERRIDES"] = json.dumps(overrides)
    bento_service.config["workers"] = workers
    bento_service.inject_config()
    prometheus_dir(settings, host, port)  # this server's own, never another's
    print(f"botfilter: serving {version} on http://{host}:{port} with {workers} worker(s)")
    if not closed:
        print(
            "botfilter: warning: no API token exists, so every caller may act for every tenant; "
            "create one with `botfilter tokens create --tenant ID` (docs/api.md)"
        )
    return serve_http(
        SERVICE,
        working_dir=os.getcwd(),
        host=host,
        port=port,
        threaded=not blocking,
    )
