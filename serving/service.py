"""The BentoML service: ``bentoml serve serving.service:BotfilterService`` (or ``botfilter serve``).

BentoML is the server (workers, the HTTP stack, ``/metrics``, ``/docs.json``). The routes are a
FastAPI app mounted into the service, because they need what BentoML's own API endpoints do not
give: a per-event error instead of failing the whole body, 422 (not 400) for an invalid body, and
401/403/413 decided before the body is read (:class:`serving.api.Gate`, a middleware on the whole
server). Each worker builds its runtime (champion model, enrichers, window state, token checks)
at start; settings come from ``BOTFILTER_*`` variables, which every worker inherits.

The service is a :class:`GatedService`: the app a worker serves is BentoML's wrapped in
:class:`serving.api.PathGuard`, which answers unknown paths before BentoML's own metrics
middleware labels them (with the raw path), and the worker's uvicorn protocol times out
request headers that never arrive (:mod:`serving.protocol`).
"""

from __future__ import annotations

from typing import Any, cast

import bentoml

from core.settings import get_settings
from monitoring.run import gauges
from serving import runtime
from serving.api import Gate, PathGuard, build_app
from serving.prometheus import with_bot_share
from serving.protocol import install

app = build_app()


class GatedService(bentoml.Service):
    """A BentoML service whose workers serve its app behind :class:`PathGuard`, with request
    headers timed out."""

    def to_asgi(self, is_main: bool = True) -> Any:
        # Each worker calls this before it loads its uvicorn configuration.
        install(get_settings().header_timeout_s)
        return PathGuard(super().to_asgi(is_main))


@bentoml.service(name="botfilter", traffic={"timeout": 120}, service_class=GatedService)
@bentoml.asgi_app(app, path="/")
class BotfilterService:
    """Online bot scoring of email/SMS opens and clicks."""

    def __init__(self) -> None:
        self.runtime = runtime.start(get_settings())

    @bentoml.on_shutdown
    def _close(self) -> None:
        runtime.set_current(None)
        self.runtime.close()

    def __metrics__(self, content: str) -> str:
        # The drift gauges come from the latest `botfilter monitor` report under the data home.
        return with_bot_share(content) + gauges(get_settings().home)


# The decorators turned the class into a bentoml.Service; mypy keeps a decorated class's own type.
bento_service = cast("bentoml.Service[BotfilterService]", BotfilterService)
bento_service.add_asgi_middleware(Gate)
