"""featurelens service kit: settings, logging, the gRPC server lifecycle, health, errors, peer
calls, the allowed-folders check, bounded echoes of client values and secret redaction.

The embedded host (``featurelens.kit.embedded``) and its launcher (``featurelens.kit.launcher``)
are imported by name: they are for tools, not for services, and ``python -m
featurelens.kit.embedded`` must not find its module imported already.
"""

from featurelens.kit.echo import bounded, shown
from featurelens.kit.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServiceError,
    UnauthenticatedError,
    UnavailableError,
    register_error,
    status_for,
)
from featurelens.kit.logs import configure_logging, redact
from featurelens.kit.paths import allowed_path
from featurelens.kit.peers import Peer, peer_channel
from featurelens.kit.redaction import register_secret, register_settings_secrets
from featurelens.kit.runner import run_service
from featurelens.kit.server import GrpcServer, Servicer, channel_options
from featurelens.kit.settings import ServiceSettings, service_config

__all__ = [
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "GrpcServer",
    "InvalidArgumentError",
    "NotFoundError",
    "Peer",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ServiceError",
    "ServiceSettings",
    "Servicer",
    "UnauthenticatedError",
    "UnavailableError",
    "allowed_path",
    "bounded",
    "channel_options",
    "configure_logging",
    "peer_channel",
    "redact",
    "register_error",
    "register_secret",
    "register_settings_secrets",
    "run_service",
    "service_config",
    "shown",
    "status_for",
]
