"""featurelens service kit: settings, logging, the gRPC server lifecycle, health and errors."""

from featurelens.kit.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServiceError,
    UnavailableError,
    register_error,
    status_for,
)
from featurelens.kit.logs import configure_logging, redact
from featurelens.kit.runner import run_service
from featurelens.kit.server import GrpcServer, Servicer, channel_options, insecure_channel
from featurelens.kit.settings import ServiceSettings, service_config

__all__ = [
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "GrpcServer",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ServiceError",
    "ServiceSettings",
    "Servicer",
    "UnavailableError",
    "channel_options",
    "configure_logging",
    "insecure_channel",
    "redact",
    "register_error",
    "run_service",
    "service_config",
    "status_for",
]
