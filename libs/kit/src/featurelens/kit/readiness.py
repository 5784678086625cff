"""Health that follows what a running service can serve, not only whether it has started.

The server turns a service SERVING once its ``start()`` returns (``featurelens.kit.server``). A
servicer whose serving depends on something that can go away later (search and labelling on
their Qdrant store) also offers ``unready_reason()``: None while it can serve, else a sentence
saying why not. ``follow_readiness`` asks it every ``interval_s`` seconds and turns the service's
health (and the overall "" status) NOT_SERVING while it cannot serve and SERVING again when it
can, logging each change once; a load balancer or Kubernetes probe then routes around it.

Peers (encoder, sae ...) are not probed here: a service with a peer down still serves what does
not need that peer, and answers what does with UNAVAILABLE naming it; taking every caller of a
down service out of rotation as well would spread one outage to all of them.

The runner and the embedded host start it once the server is ready; after SIGTERM the health
servicer ignores updates (graceful shutdown), so a probe cannot turn a draining server SERVING.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, runtime_checkable

from featurelens.kit.server import NOT_SERVING, SERVING, GrpcServer

logger = logging.getLogger(__name__)

#: Seconds between two rounds of readiness checks.
DEFAULT_INTERVAL_S = 5.0


@runtime_checkable
class Readiness(Protocol):
    """A servicer that can say whether it can serve right now."""

    async def unready_reason(self) -> str | None:
        """None while the service can serve; else why it cannot (a sentence naming the dependency)."""


async def follow_readiness(server: GrpcServer, interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """Keep the health of ``server``'s probed services in line with their readiness, forever
    (cancel the task to stop). Returns at once when no servicer offers ``unready_reason``."""
    probed = [servicer for servicer in server.servicers if isinstance(servicer, Readiness)]
    if not probed:
        return
    serving: dict[str, bool] = {}
    overall = True
    while True:
        for servicer in probed:
            try:
                reason = await asyncio.wait_for(servicer.unready_reason(), timeout=max(interval_s, 1.0) * 2)
            except Exception as error:  # a probe that fails says the service cannot serve
                reason = f"its readiness check failed ({type(error).__name__}: {error})"
            for name in servicer.service_names:
                now = reason is None
                if serving.get(name, True) != now:
                    if now:
                        logger.info("%s can serve again; health SERVING", name)
                    else:
                        logger.warning("%s cannot serve: %s; health NOT_SERVING", name, reason)
                    await server.health.set(name, SERVING if now else NOT_SERVING)
                serving[name] = now
        now_all = all(serving.values())
        if now_all != overall:
            await server.health.set("", SERVING if now_all else NOT_SERVING)
            overall = now_all
        await asyncio.sleep(interval_s)


def start_following(server: GrpcServer, interval_s: float = DEFAULT_INTERVAL_S) -> asyncio.Task[None]:
    """``follow_readiness`` as a task of the running loop (call once the server is ready)."""
    return asyncio.get_running_loop().create_task(
        follow_readiness(server, interval_s), name="featurelens-readiness"
    )
