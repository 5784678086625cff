"""``featurelens up``: every installed service in one process on one port (the embedded mode).

Services are found by importing ``featurelens.services.<name>.__main__`` and calling its
``build_servicer(settings)``; each reads its own ``FEATURELENS_<SERVICE>_*`` variables, as it
does when it runs alone, and ``service_settings`` adapts the rest to one process: one port,
one data folder, services that call each other through this same server.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from featurelens.cli.console import console, err_console, fail

if TYPE_CHECKING:
    from featurelens.kit import ServiceSettings
    from featurelens.kit.server import Servicer

#: Services in the order they start (later ones call earlier ones).
SERVICES = ("encoder", "sae", "search", "labelling", "family")
#: Fills each service's ``redis_url`` unless its own ``FEATURELENS_<SERVICE>_REDIS_URL`` is set.
SHARED_REDIS_URL = "FEATURELENS_REDIS_URL"


@dataclass(frozen=True)
class ServiceFactory:
    """How to build one installed service."""

    name: str
    settings_class: type[ServiceSettings]
    build_servicer: Callable[[Any], Servicer]


def discover_services(names: Sequence[str] = SERVICES) -> list[ServiceFactory]:
    """The services whose package is installed, each with its settings class and factory."""
    found = []
    for name in names:
        module_name = f"featurelens.services.{name}.__main__"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only the service itself being absent means "not installed"; a missing dependency
            # of an installed service is a broken install and should say so.
            missing = error.name or ""
            if module_name == missing or module_name.startswith(f"{missing}."):
                continue
            raise
        build = getattr(module, "build_servicer", None)
        if build is None:
            continue
        found.append(ServiceFactory(name, _settings_class(module, build), build))
    return found


def _settings_class(module: Any, build: Callable[..., Any]) -> type[ServiceSettings]:
    from featurelens.kit import ServiceSettings

    hints = typing.get_type_hints(build, vars(module))
    settings_class = hints.get("settings")
    if not (isinstance(settings_class, type) and issubclass(settings_class, ServiceSettings)):
        raise TypeError(
            f"{module.__name__}.build_servicer must take `settings: <a ServiceSettings subclass>`"
        )
    return settings_class


def service_settings(
    factory: ServiceFactory,
    *,
    host: str,
    port: int,
    data_dir: Path,
    models: Sequence[str] = (),
    hosted: Sequence[str] = (),
) -> ServiceSettings:
    """The service's settings from its environment variables, with what ``up`` decides on top.

    A variable the user set always wins, except host and port (one server hosts all). Otherwise:
    defaults under ``.featurelens/`` move into ``data_dir``; ``<service>_address`` fields of the
    services in ``hosted`` point back at this server; ``*_roots`` (server folders a caller may
    name) allow ``data_dir`` and the working directory; ``FEATURELENS_REDIS_URL`` fills
    ``redis_url``; ``models`` (when given) sets the encoder's models.
    """
    cls = factory.settings_class
    prefix = str(cls.model_config.get("env_prefix", ""))

    def user_set(field: str) -> bool:
        return f"{prefix}{field}".upper() in {key.upper() for key in os.environ}

    overrides: dict[str, Any] = {"host": host, "port": port}
    own_address = f"{_connect_host(host)}:{port}"
    for name, info in cls.model_fields.items():
        if user_set(name):
            continue
        default = info.default
        if isinstance(default, Path) and default.parts[:1] == (".featurelens",):
            overrides[name] = data_dir.joinpath(*default.parts[1:])
        elif name.endswith("_address") and name.removesuffix("_address") in hosted:
            overrides[name] = own_address
        elif name.endswith("_roots"):
            # Folders a service may read on a caller's behalf (training data, corpora). The
            # embedded mode serves one local user, so it allows the data folder and the working
            # directory; a deployed service allows only what its environment names.
            overrides[name] = [data_dir.resolve(), Path.cwd()]
    if factory.name == "encoder" and models:
        overrides["models"] = list(models)
    shared_redis = os.environ.get(SHARED_REDIS_URL, "")
    if "redis_url" in cls.model_fields and shared_redis and not user_set("redis_url"):
        overrides["redis_url"] = shared_redis
    return cls(**overrides)


def _connect_host(host: str) -> str:
    """Where this process reaches a server bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def free_port(host: str) -> int:
    """A port that is free now; the services need the real port before the server binds it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        return int(probe.getsockname()[1])


def _split(values: Sequence[str] | None) -> list[str]:
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def up(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 50051,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Folder for the services' local state.")
    ] = Path(".featurelens"),
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="Encoder backends to load: sentence-transformers, wordllama, openai "
            "(repeat or comma-separate; default: FEATURELENS_ENCODER_MODELS or sentence-transformers).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run every installed featurelens service in this process until Ctrl-C or SIGTERM."""
    try:
        from pydantic import ValidationError

        from featurelens.kit import GrpcServer, configure_logging
    except ModuleNotFoundError as error:
        raise fail(
            "`featurelens up` needs the server packages: pip install 'featurelens-client[server]'"
        ) from error

    factories = discover_services()
    if not factories:
        raise fail("no featurelens services are installed (looked for featurelens.services.*)")
    data_dir.mkdir(parents=True, exist_ok=True)
    if port == 0:
        port = free_port(host)
    hosted = [factory.name for factory in factories]
    try:
        all_settings = [
            service_settings(
                factory, host=host, port=port, data_dir=data_dir, models=_split(models), hosted=hosted
            )
            for factory in factories
        ]
    except ValidationError as error:
        raise fail(f"invalid settings: {error}") from error
    configure_logging(log_level, "auto")
    servicers = [
        factory.build_servicer(settings) for factory, settings in zip(factories, all_settings, strict=True)
    ]
    names = ", ".join(f.name for f in factories)
    # One server for all: the most generous of the services' limits.
    server = GrpcServer(
        servicers,
        host=host,
        port=port,
        grace_period_s=max(settings.grace_period_s for settings in all_settings),
        max_message_bytes=max(settings.max_message_bytes for settings in all_settings),
    )
    err_console.print(
        f"starting {names} on {host}:{port} (loading models)...", highlight=False, soft_wrap=True
    )

    def announce() -> None:
        console.print(
            f"featurelens is up at {server.address} ({names}); Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )

    try:
        asyncio.run(server.serve_until_signalled(on_ready=announce))
    except KeyboardInterrupt:
        # Ctrl-C before the server took over the signal (while models were still loading).
        raise fail("interrupted", 130) from None
    except OSError as error:
        raise fail(str(error)) from error
    except Exception as error:
        raise fail(f"a service failed to start: {error}") from error
    console.print("featurelens stopped", highlight=False, soft_wrap=True)
