"""Run the sae service: ``python -m featurelens.services.sae``.

This is the only module that reads the environment (through ``SaeSettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls.
"""

from __future__ import annotations

import asyncio

import torch

from featurelens.kit import GrpcServer, configure_logging
from featurelens.services.sae.registry import SaeRegistry
from featurelens.services.sae.servicer import SaeServicer
from featurelens.services.sae.settings import SaeSettings


def build_registry(settings: SaeSettings) -> SaeRegistry:
    """The checkpoint registry per the settings (nothing is read until the server starts)."""
    return SaeRegistry(
        settings.checkpoints_dir,
        device=settings.device,
        dtype=getattr(torch, settings.dtype),
        max_loaded=settings.max_loaded_saes,
        pinned_default=settings.default_sae_id,
    )


def build_servicer(settings: SaeSettings) -> SaeServicer:
    """An sae servicer per the settings; the default SAE loads when the server starts it."""
    return SaeServicer(
        build_registry(settings),
        max_batch=settings.max_batch,
        batch_window_ms=settings.batch_window_ms,
        batch_max_rows=settings.batch_max_rows,
        max_interventions=settings.max_interventions,
        max_steer_weight=settings.max_steer_weight,
        train_data_roots=settings.train_data_roots,
        max_num_latents=settings.max_num_latents,
        max_train_epochs=settings.max_train_epochs,
        train_progress_interval_s=settings.train_progress_interval_s,
    )


async def serve(settings: SaeSettings) -> None:
    """Serve until SIGTERM or SIGINT, then drain and stop."""
    # Built inside the running loop: a grpc.aio server binds to the loop it is created in.
    server = GrpcServer(
        [build_servicer(settings)],
        host=settings.host,
        port=settings.port,
        grace_period_s=settings.grace_period_s,
        max_message_bytes=settings.max_message_bytes,
    )
    await server.serve_until_signalled()


def main() -> None:
    settings = SaeSettings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
