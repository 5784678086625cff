"""The embedded mode: every installed service in one process, on one port.

    python -m featurelens.kit.embedded [--host 127.0.0.1] [--port 50051] [--data-dir .featurelens]
                                       [--models wordllama] [--services encoder,sae,search]
                                       [--api-keys-file keys.txt] [--metrics-port 9464]

``featurelens up`` is this with a friendlier face, and ``featurelens.kit.launcher`` starts it as
a child process for the demo and the benchmarks.

Services are found by importing ``featurelens.services.<name>.__main__`` by name (the kit never
imports a service's code statically) and calling its ``build_servicer(settings)``. Each reads its
own ``FEATURELENS_<SERVICE>_*`` variables, as it does when it runs alone, and
``service_settings`` adapts the rest to one process: one port, one data folder, services that
call each other through this same server.

API keys are the host's, not each service's: ``--api-keys-file`` turns them on for the one port
(health and reflection stay open), and the services' calls to each other carry a key made up for
this process alone. A service's own ``API_KEYS*`` / ``TLS_*`` settings are refused here rather
than half applied; the embedded host serves plaintext, meant for loopback.

Metrics and traces are the host's too: ``--metrics-port`` serves one ``/metrics`` for every hosted
service (told apart by the ``service`` label), and ``FEATURELENS_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_ENDPOINT``) sends the process's spans to a collector as service "featurelens".
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import secrets
import socket
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from featurelens.kit import tracing
from featurelens.kit.auth import ApiKeys, PeerSecurity, SecurityConfigError, ServerAuth, key_digest
from featurelens.kit.logs import configure_logging
from featurelens.kit.observer import install_observer
from featurelens.kit.peers import serve_in_process, set_peer_security, stop_serving_in_process
from featurelens.kit.readiness import start_following
from featurelens.kit.redaction import register_secret, register_settings_secrets
from featurelens.kit.server import GrpcServer, Servicer
from featurelens.kit.settings import ServiceSettings

# Named, not __name__: run with -m this module is "__main__".
logger = logging.getLogger("featurelens.kit.embedded")

#: Services in the order they start (later ones call earlier ones).
SERVICES = ("encoder", "sae", "search", "labelling", "family")
#: Fills each service's ``redis_url`` unless its own ``FEATURELENS_<SERVICE>_REDIS_URL`` is set.
SHARED_REDIS_URL = "FEATURELENS_REDIS_URL"
DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = Path(".featurelens")


class EmbeddedHostError(Exception):
    """The embedded host cannot be set up: no service installed, or a setting is invalid."""


@dataclass(frozen=True)
class ServiceFactory:
    """How to build one installed service."""

    name: str
    settings_class: type[ServiceSettings]
    build_servicer: Callable[[Any], Servicer]


def discover_services(names: Sequence[str] = SERVICES) -> list[ServiceFactory]:
    """The services among ``names`` whose package is installed, each with its settings class."""
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


def _settings_class(module: ModuleType, build: Callable[..., Any]) -> type[ServiceSettings]:
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
    """The service's settings from its environment variables, with what the host decides on top.

    A variable the user set always wins, except host and port (one server hosts all). Otherwise:
    defaults under ``.featurelens/`` move into ``data_dir``; ``<service>_address`` fields of the
    services in ``hosted`` point back at this server; ``*_roots`` (server folders a caller may
    name) allow ``readable_roots(data_dir)``; ``FEATURELENS_REDIS_URL`` fills ``redis_url``;
    ``models`` (when given) sets the encoder's models.
    """
    cls = factory.settings_class
    prefix = str(cls.model_config.get("env_prefix", ""))
    set_by_user = {key.upper() for key in os.environ}

    def user_set(field: str) -> bool:
        return f"{prefix}{field}".upper() in set_by_user

    overrides: dict[str, Any] = {"host": host, "port": port}
    own_address = f"{connect_host(host)}:{port}"
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
            overrides[name] = readable_roots(data_dir)
    if factory.name == "encoder" and models:
        overrides["models"] = list(models)
    shared_redis = os.environ.get(SHARED_REDIS_URL, "")
    if "redis_url" in cls.model_fields and shared_redis and not user_set("redis_url"):
        overrides["redis_url"] = shared_redis
    return cls(**overrides)


def too_broad_to_read(folder: Path) -> bool:
    """Whether ``folder`` is the root, the home folder or a folder above it: allowing every file
    under it would hand a client the user's keys and documents."""
    folder = folder.resolve()
    if folder == Path(folder.anchor):
        return True
    try:
        home = Path.home().resolve()
    except RuntimeError:  # no home folder known: only the root is ruled out
        return False
    return home.is_relative_to(folder)


def readable_roots(data_dir: Path, cwd: Path | None = None) -> list[Path]:
    """The folders the embedded host lets its services read files from: the data folder and the
    working directory, or only the data folder when the working directory is too broad (the home
    folder, one above it, or the root)."""
    cwd = Path.cwd() if cwd is None else cwd
    if too_broad_to_read(cwd):
        return [data_dir.resolve()]
    return [data_dir.resolve(), cwd.resolve()]


def connect_host(host: str) -> str:
    """Where this machine reaches a server bound to ``host`` (a wildcard means loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def free_port(host: str) -> int:
    """A port that is free now; the services need the real port before the server binds it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class EmbeddedHost:
    """The installed services, their settings and the one address they are served on."""

    host: str
    port: int
    factories: list[ServiceFactory]
    settings: list[ServiceSettings]
    #: Which calls the one server admits (every call unless ``--api-keys-file`` was given).
    auth: ServerAuth = field(default_factory=ServerAuth)
    #: The key the hosted services send each other when keys are on; made up for this process.
    peer_key: str | None = field(default=None, repr=False)
    #: HTTP port of ``/metrics`` for every hosted service (0: not served).
    metrics_port: int = 0

    @property
    def address(self) -> str:
        """Where the hosted services reach each other (their ``*_address`` settings point here)."""
        return f"{connect_host(self.host)}:{self.port}"

    @property
    def names(self) -> list[str]:
        return [factory.name for factory in self.factories]

    def readable_folders(self) -> list[str]:
        """One sentence per service that reads files a client names: the folders it may read, and
        the variable that changes them (``featurelens up`` logs these as it starts)."""
        sentences = []
        for factory, settings in zip(self.factories, self.settings, strict=True):
            prefix = str(type(settings).model_config.get("env_prefix", ""))
            for name in type(settings).model_fields:
                if not name.endswith("_roots"):
                    continue
                roots = getattr(settings, name)
                folders = ", ".join(str(root) for root in roots) or "none"
                sentences.append(
                    f"{factory.name} may read the files a client names (JSONL, CSV, Parquet, embedding "
                    f"stores) under: {folders} ({prefix}{name.upper()} changes this)"
                )
        return sentences

    def build_server(self) -> GrpcServer:
        """The servicers and the one server hosting them (models load when it starts)."""
        # Before any servicer exists: nothing it logs or answers may carry a configured secret.
        for settings in self.settings:
            register_settings_secrets(settings)
        set_peer_security(PeerSecurity(api_key=self.peer_key))
        servicers = [
            factory.build_servicer(settings)
            for factory, settings in zip(self.factories, self.settings, strict=True)
        ]
        # The services call each other at this address: their peers may skip the gRPC hop.
        serve_in_process(self.address, servicers)
        # One server for all: the most generous of the services' limits.
        return GrpcServer(
            servicers,
            host=self.host,
            port=self.port,
            grace_period_s=max(settings.grace_period_s for settings in self.settings),
            max_message_bytes=max(settings.max_message_bytes for settings in self.settings),
            auth=self.auth,
            metrics_port=self.metrics_port or None,
        )

    async def serve(self, on_ready: Callable[[GrpcServer], None] | None = None) -> None:
        """Serve until SIGTERM or SIGINT; ``on_ready`` once every service reports SERVING.

        A service that fails to start stops the server and its error is raised here.
        """
        sentences = self.readable_folders()
        for sentence in sentences:
            logger.info("%s", sentence)
        if sentences and too_broad_to_read(Path.cwd()):
            logger.info(
                "started from %s (the home folder, one above it or the root): services read files "
                "only in the data folder, not under the working directory",
                Path.cwd(),
            )
        install_observer()
        # The endpoint is process-wide (FEATURELENS_OTLP_ENDPOINT), so every service has the same.
        tracing.configure("featurelens", self.settings[0].otlp_endpoint)
        # Built inside the running loop: a grpc.aio server binds to the loop it is created in.
        server = self.build_server()
        following: list[asyncio.Task[None]] = []

        def ready() -> None:
            # From now on health follows what each service can serve (its store going away and back).
            following.append(start_following(server))
            if on_ready is not None:
                on_ready(server)

        try:
            await server.serve_until_signalled(on_ready=ready)
        finally:
            stop_serving_in_process(self.address)
            for task in following:
                task.cancel()
            tracing.shutdown()


def embedded_host(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    data_dir: Path = DEFAULT_DATA_DIR,
    models: Sequence[str] = (),
    services: Sequence[str] = SERVICES,
    api_keys_file: Path | None = None,
    metrics_port: int = 0,
) -> EmbeddedHost:
    """Discover the installed ``services`` and settle their settings (port 0 picks a free one).

    ``api_keys_file``: the keys the server accepts (see ``featurelens.kit.auth``); None: no key needed.
    ``metrics_port``: HTTP port of ``/metrics`` for all the services (0: none).
    Creates ``data_dir``. Raises ``EmbeddedHostError`` when none of the services is installed, a
    setting is invalid or the key file cannot be used.
    """
    factories = discover_services(services)
    if not factories:
        looked_for = ", ".join(f"featurelens.services.{name}" for name in services)
        raise EmbeddedHostError(f"no featurelens services are installed (looked for {looked_for})")
    data_dir.mkdir(parents=True, exist_ok=True)
    if port == 0:
        port = free_port(host)
    hosted = [factory.name for factory in factories]
    try:
        settings = [
            service_settings(factory, host=host, port=port, data_dir=data_dir, models=models, hosted=hosted)
            for factory in factories
        ]
    except ValidationError as error:
        raise EmbeddedHostError(f"invalid settings: {error}") from error
    _refuse_per_service_security(settings)
    if api_keys_file is None:
        return EmbeddedHost(host, port, factories, settings, metrics_port=metrics_port)
    try:
        keys = ApiKeys.from_file(api_keys_file, "--api-keys-file")
    except SecurityConfigError as error:
        raise EmbeddedHostError(str(error)) from error
    peer_key = secrets.token_urlsafe(32)
    register_secret(peer_key)
    auth = ServerAuth(keys + ApiKeys([key_digest(peer_key)]))
    return EmbeddedHost(host, port, factories, settings, auth, peer_key, metrics_port)


_SERVER_SECURITY = ("api_keys_file", "api_keys", "tls_cert_file", "tls_key_file", "tls_client_ca_file")


def _refuse_per_service_security(settings: Sequence[ServiceSettings]) -> None:
    """EmbeddedHostError when a hosted service's keys or TLS are set: one server cannot apply them."""
    for service_settings in settings:
        prefix = str(type(service_settings).model_config.get("env_prefix", ""))
        for name in _SERVER_SECURITY:
            if getattr(service_settings, name):
                raise EmbeddedHostError(
                    f"{prefix}{name.upper()} is set, but the embedded host serves every service on one "
                    "port with one set of keys and no TLS: unset it, and pass --api-keys-file to "
                    "require keys (or run the services on their own, as docker compose does)"
                )


def split_list(values: Sequence[str] | None) -> list[str]:
    """Repeated and comma-separated command-line values as one list."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the embedded host until SIGTERM or SIGINT; 0 when it stopped cleanly."""
    parser = argparse.ArgumentParser(
        prog="python -m featurelens.kit.embedded",
        description="Every installed featurelens service in this process, on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port; 0 picks a free one")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the services' local state")
    parser.add_argument("--models", action="append", help="encoder backends (repeat or comma-separate)")
    parser.add_argument("--services", action="append", help="services to host (default: all installed)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--log-format", default="auto", choices=("auto", "text", "json"))
    parser.add_argument(
        "--api-keys-file", type=Path, default=None, help="API keys to require, one a line (default: none)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="HTTP port of Prometheus /metrics (default 0: none)"
    )
    ns = parser.parse_args(argv)
    configure_logging(ns.log_level, ns.log_format)
    try:
        host = embedded_host(
            host=ns.host,
            port=ns.port,
            data_dir=ns.data_dir,
            models=split_list(ns.models),
            services=split_list(ns.services) or SERVICES,
            api_keys_file=ns.api_keys_file,
            metrics_port=ns.metrics_port,
        )
    except EmbeddedHostError as error:
        logger.error("%s", error)
        return 1
    logger.info("starting %s on %s:%d (loading models)", ", ".join(host.names), host.host, host.port)

    def announce(server: GrpcServer) -> None:
        logger.info("featurelens is up at %s (%s)", server.address, ", ".join(host.names))

    try:
        asyncio.run(host.serve(on_ready=announce))
    except KeyboardInterrupt:
        # Ctrl-C before the server took over the signal (while models were still loading).
        logger.error("interrupted while starting")
        return 130
    except OSError as error:
        logger.error("%s", error)
        return 1
    except Exception:
        logger.exception("the embedded host failed")
        return 1
    logger.info("featurelens stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
