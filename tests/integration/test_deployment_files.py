"""Static checks of docker-compose.yml and the service Dockerfiles, so a deployment fails here
rather than at `docker compose up`: files that exist, ports that agree, settings that are real."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployment_settings import load_settings, settings_class, unknown_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
SERVICE_DOCKERFILE = re.compile(r"^services/(?P<name>[a-z_]+)/Dockerfile$")
ROOT_USERS = {"root", "0", "0:0", "root:root"}
#: The health probe of each image: the kit's gRPC one, except where a service speaks HTTP.
HEALTHCHECK_MODULE = {"gateway": "featurelens.services.gateway.healthcheck"}
#: The services built on the SDK (the gateway talks to the others only through it).
SDK_SERVICES = {"gateway"}


# -- reading the files -----------------------------------------------------------------------------


@dataclass
class Stage:
    """One FROM ... section of a Dockerfile, as (instruction, arguments) pairs."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_stages(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            stages.append(Stage(base=args))
        elif stages:
            stages[-1].instructions.append((keyword, args))
        else:
            assert keyword == "ARG", f"{path}: {keyword} before the first FROM"
    return stages


def words(args: str) -> list[str]:
    """The words of an instruction in exec (JSON array) or shell form."""
    return list(json.loads(args)) if args.startswith("[") else shlex.split(args)


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        tokens = shlex.split(args)
        if tokens and "=" not in tokens[0]:
            env[tokens[0]] = " ".join(tokens[1:])  # the legacy `ENV KEY value` form
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith(("#", "!"))]


def is_ignored(source: str, patterns: list[str]) -> bool:
    parts = Path(source).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes for pattern in patterns)


def environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def container_ports(spec: dict[str, Any]) -> set[int]:
    ports = set()
    for port in spec.get("ports", []):
        target = port["target"] if isinstance(port, dict) else str(port).split(":")[-1]
        ports.add(int(str(target).split("/")[0]))
    return ports


def dockerfile_of(spec: dict[str, Any]) -> Path:
    build = spec["build"] if isinstance(spec["build"], dict) else {"context": spec["build"]}
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


FEATURELENS_SERVICES = {
    name: match["name"]
    for name, spec in SERVICES.items()
    if "build" in spec
    and (match := SERVICE_DOCKERFILE.match(dockerfile_of(spec).resolve().relative_to(ROOT).as_posix()))
}
DOCKERFILES = sorted({dockerfile_of(spec) for spec in SERVICES.values() if "build" in spec})


# -- docker-compose.yml ----------------------------------------------------------------------------


def test_the_compose_file_defines_the_encoder_with_redis_and_qdrant() -> None:
    assert {"redis", "qdrant", "encoder"} <= set(SERVICES)
    assert FEATURELENS_SERVICES["encoder"] == "encoder"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_or_a_build_whose_files_exist(name: str) -> None:
    spec = SERVICES[name]
    assert "image" in spec or "build" in spec, f"{name} has neither image nor build"
    if "build" in spec:
        build = spec["build"] if isinstance(spec["build"], dict) else {"context": spec["build"]}
        assert (ROOT / build.get("context", ".")).is_dir(), f"{name}: build context does not exist"
        assert dockerfile_of(spec).is_file(), f"{name}: {dockerfile_of(spec)} does not exist"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_depends_only_on_defined_services(name: str) -> None:
    spec = SERVICES[name]
    assert spec.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    depends_on = spec.get("depends_on", {})
    assert set(depends_on) <= set(SERVICES), f"{name} depends on undefined services"
    if isinstance(depends_on, dict):
        for dependency, condition in depends_on.items():
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck to wait for"


@pytest.mark.parametrize("name", sorted(FEATURELENS_SERVICES))
def test_a_featurelens_service_publishes_the_port_it_listens_on_and_checks_health_there(name: str) -> None:
    spec, service = SERVICES[name], FEATURELENS_SERVICES[name]
    final = dockerfile_stages(dockerfile_of(spec))[-1]
    env = {**env_of(final), **environment(spec)}
    listening = int(env.get(f"FEATURELENS_{service.upper()}_PORT", settings_class(service)().port))
    exposed = {int(port.split("/")[0]) for args in final.all("EXPOSE") for port in args.split()}

    assert container_ports(spec) == {listening}
    assert listening in exposed
    health = " ".join(map(str, spec["healthcheck"]["test"]))
    assert HEALTHCHECK_MODULE.get(service, "featurelens.kit.healthcheck") in health
    assert f"--port {listening}" in health


@pytest.mark.parametrize("name", sorted(FEATURELENS_SERVICES))
def test_a_featurelens_service_container_binds_every_interface_explicitly(name: str) -> None:
    # A service binds 127.0.0.1 unless told otherwise; in a container it must say 0.0.0.0, or
    # nothing outside the container (compose's other services, the published port) reaches it.
    spec, service = SERVICES[name], FEATURELENS_SERVICES[name]
    env = {**env_of(dockerfile_stages(dockerfile_of(spec))[-1]), **environment(spec)}

    assert settings_class(service)().host == "127.0.0.1"
    assert env.get(f"FEATURELENS_{service.upper()}_HOST") == "0.0.0.0"


@pytest.mark.parametrize("name", sorted(FEATURELENS_SERVICES))
def test_featurelens_variables_in_compose_name_real_settings_with_valid_values(name: str) -> None:
    spec, service = SERVICES[name], FEATURELENS_SERVICES[name]
    env = environment(spec)

    assert unknown_settings(env, service) == []
    load_settings(env, service)  # raises a ValidationError naming any value that does not parse


@pytest.mark.parametrize("name", sorted(FEATURELENS_SERVICES))
def test_a_featurelens_service_reads_its_api_keys_from_a_secret_it_mounts(name: str) -> None:
    spec, service = SERVICES[name], FEATURELENS_SERVICES[name]
    env = environment(spec)
    prefix = f"FEATURELENS_{service.upper()}_"
    key_setting = "API_KEY_FILE" if service in SDK_SERVICES else "API_KEYS_FILE"

    assert env.get(prefix + key_setting, "").startswith("/run/secrets/"), f"{name}: no API key secret"
    assert secret_file_problems(spec, COMPOSE) == []


def secret_file_problems(spec: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """What is wrong with the secrets of a compose service: a variable naming /run/secrets/<name>
    that the service does not mount, or a mounted secret the file does not define."""
    mounts = [s if isinstance(s, dict) else {"source": s} for s in spec.get("secrets", [])]
    mounted = {m.get("target", m["source"]) for m in mounts}
    problems = [
        f"{key}: the service does not mount the secret {value.removeprefix('/run/secrets/')!r}"
        for key, value in environment(spec).items()
        if value.startswith("/run/secrets/") and value.removeprefix("/run/secrets/") not in mounted
    ]
    defined = compose.get("secrets", {})
    problems += [f"secret {m['source']!r} is not defined" for m in mounts if m["source"] not in defined]
    return problems


def test_the_secret_check_catches_a_secret_the_service_does_not_mount_or_the_file_lacks() -> None:
    env = {"FEATURELENS_SEARCH_API_KEYS_FILE": "/run/secrets/api_keys"}

    mounting = {"environment": env, "secrets": ["api_keys"]}

    assert len(secret_file_problems({"environment": env, "secrets": ["x"]}, {"secrets": {"x": {}}})) == 1
    assert len(secret_file_problems(mounting, {"secrets": {}})) == 1
    assert secret_file_problems(mounting, {"secrets": {"api_keys": {}}}) == []


def test_the_api_key_secrets_are_git_ignored_files_with_a_committed_example() -> None:
    files = [str(ROOT / secret["file"]) for secret in COMPOSE["secrets"].values()]
    ignored = subprocess.run(
        ["git", "check-ignore", *files], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    example = ROOT / "secrets" / "api_keys.example.txt"

    assert set(COMPOSE["secrets"]) == {"api_keys", "peer_api_key"}
    assert ignored == files, "a secrets file is not git-ignored"
    assert example.is_file()
    assert subprocess.run(["git", "check-ignore", "-q", str(example)], cwd=ROOT, check=False).returncode == 1


# -- the observability profile (infra/compose/prometheus.yml) ----------------------------------------

PROMETHEUS_CONFIG_PATH = ROOT / "infra" / "compose" / "prometheus.yml"


def scrape_targets(config: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(job, compose service, port) of every static target of a Prometheus configuration."""
    found = []
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, _, port = str(target).rpartition(":")
                found.append((job["job_name"], host, int(port)))
    return found


def metrics_port_of(name: str) -> int | None:
    """Where the compose service ``name`` serves /metrics: its METRICS_PORT setting (0: nowhere),
    the gateway's HTTP port, None for what is no featurelens service."""
    if name not in FEATURELENS_SERVICES:
        return None
    spec, service = SERVICES[name], FEATURELENS_SERVICES[name]
    settings = load_settings(environment(spec), service)
    if service in SDK_SERVICES:
        return settings.port
    return settings.metrics_port or None


def scrape_problems(config: dict[str, Any]) -> list[str]:
    """What is wrong with the Prometheus configuration: a target that names no featurelens service
    of docker-compose.yml or misses its metrics port, or a service it does not scrape."""
    problems = []
    scraped = set()
    for job, host, port in scrape_targets(config):
        serving = metrics_port_of(host)
        if serving is None:
            problems.append(f"{job}: {host} is no featurelens service serving metrics in docker-compose.yml")
        elif port != serving:
            problems.append(f"{job}: {host}:{port}, but {host} serves /metrics on port {serving}")
        scraped.add(host)
    problems += [f"{name} is not scraped" for name in sorted(set(FEATURELENS_SERVICES) - scraped)]
    return problems


def test_prometheus_scrapes_every_service_on_the_metrics_port_compose_gives_it() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text(encoding="utf-8"))

    assert scrape_problems(config) == []


def test_the_scrape_check_catches_a_wrong_port_an_unknown_service_and_a_missing_one() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text(encoding="utf-8"))
    config["scrape_configs"][0]["static_configs"][0]["targets"] = ["encoder:9999"]
    config["scrape_configs"][1]["static_configs"][0]["targets"] = ["nowhere:9464"]

    problems = scrape_problems(config)

    assert any("encoder:9999" in problem for problem in problems)
    assert any("nowhere" in problem for problem in problems)
    assert any(problem.endswith("is not scraped") for problem in problems)


@pytest.mark.parametrize("name", sorted(set(FEATURELENS_SERVICES) - {"gateway"}))
def test_a_grpc_service_exposes_its_metrics_port_inside_the_compose_network_only(name: str) -> None:
    spec = SERVICES[name]
    port = metrics_port_of(name)

    assert port is not None, f"{name}: no METRICS_PORT"
    assert str(port) in {str(p) for p in spec.get("expose", [])}
    assert port not in container_ports(spec), "the metrics port is published on the host"


def test_the_prometheus_service_is_optional_and_mounts_the_checked_configuration() -> None:
    prometheus = SERVICES["prometheus"]

    assert prometheus["profiles"] == ["observability"]
    assert any(volume.startswith("./infra/compose/prometheus.yml:") for volume in prometheus["volumes"])


# -- the GPU overlay (infra/compose/docker-compose.gpu.yml) ------------------------------------------

GPU_OVERLAY_PATH = ROOT / "infra" / "compose" / "docker-compose.gpu.yml"
GPU_OVERLAY = yaml.safe_load(GPU_OVERLAY_PATH.read_text(encoding="utf-8"))


def gpu_reservations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    devices = spec.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return [d for d in devices if "gpu" in d.get("capabilities", [])]


def test_the_gpu_overlay_reserves_an_nvidia_gpu_for_sae_only_and_makes_it_use_cuda() -> None:
    overlay = GPU_OVERLAY["services"]
    with_gpu = {name for name, spec in {**SERVICES, **overlay}.items() if gpu_reservations(spec)}
    sae = overlay["sae"]
    env = {**environment(SERVICES["sae"]), **environment(sae)}

    assert with_gpu == {"sae"}
    assert all(d["driver"] == "nvidia" for d in gpu_reservations(sae))
    assert set(overlay) <= set(SERVICES), "the overlay names a service docker-compose.yml lacks"
    assert unknown_settings(environment(sae), "sae") == []
    assert load_settings(env, "sae").device == "cuda"  # type: ignore[attr-defined]


# -- Dockerfiles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_dockerfile_has_a_healthcheck_an_exposed_port_and_runs_as_a_non_root_user(dockerfile: Path) -> None:
    stages = dockerfile_stages(dockerfile)
    assert stages, "no FROM"
    final = stages[-1]

    healthchecks = final.all("HEALTHCHECK")
    assert healthchecks
    assert not healthchecks[-1].upper().startswith("NONE")
    assert final.all("EXPOSE")
    users = final.all("USER")
    assert users, "the image runs as root"
    assert users[-1].strip() not in ROOT_USERS


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_dockerfile_copies_only_files_that_exist_and_are_in_the_build_context(dockerfile: Path) -> None:
    ignored = dockerignore_patterns()
    for stage in dockerfile_stages(dockerfile):
        for keyword in ("COPY", "ADD"):
            for args in stage.all(keyword):
                tokens = words(args)
                if any(token.startswith("--from") for token in tokens):
                    continue
                sources = [t for t in tokens if not t.startswith("--")][:-1]
                for source in sources:
                    assert list(ROOT.glob(source)), f"{keyword} {source}: nothing there"
                    assert not is_ignored(source, ignored), f"{keyword} {source}: excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_featurelens_variables_in_a_dockerfile_name_real_settings(dockerfile: Path) -> None:
    match = SERVICE_DOCKERFILE.match(dockerfile.relative_to(ROOT).as_posix())
    if match is None:
        pytest.skip("not a featurelens service image")
    for stage in dockerfile_stages(dockerfile):
        assert unknown_settings(env_of(stage), match["name"]) == []


def _local_distributions() -> dict[str, Path]:
    """The repository's own distributions by name (``featurelens-kit`` → ``libs/kit``)."""
    found = {}
    for pyproject in ROOT.glob("*/**/pyproject.toml"):
        if ".venv" in pyproject.parts:
            continue
        found[tomllib.loads(pyproject.read_text())["project"]["name"]] = pyproject.parent
    return found


def _local_requirements(folder: Path, local: dict[str, Path]) -> set[str]:
    """The repository distributions that ``folder``'s package needs, directly or not."""
    needed: set[str] = set()
    pending = [folder]
    while pending:
        project = tomllib.loads((pending.pop() / "pyproject.toml").read_text())["project"]
        for requirement in project.get("dependencies", []):
            name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
            if name in local and name not in needed:
                needed.add(name)
                pending.append(local[name])
    return needed


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_service_image_installs_exactly_the_repository_packages_its_service_needs(dockerfile: Path) -> None:
    match = SERVICE_DOCKERFILE.match(dockerfile.relative_to(ROOT).as_posix())
    if match is None:
        pytest.skip("not a featurelens service image")
    local = _local_distributions()
    by_folder = {folder.relative_to(ROOT).as_posix(): name for name, folder in local.items()}
    installed = set()
    for stage in dockerfile_stages(dockerfile):
        for args in stage.all("RUN"):
            for token in words(args):
                folder = token.strip("\"'").removeprefix("./").split("[")[0].rstrip("/")
                if folder in by_folder:
                    installed.add(by_folder[folder])
    service = ROOT / "services" / match["name"]
    expected = _local_requirements(service, local) | {by_folder[f"services/{match['name']}"]}
    assert installed == expected
    if match["name"] not in SDK_SERVICES:
        assert "featurelens-client" not in installed, "a service image must not carry the SDK and CLI"


# -- the linters the project pins (requirements/dev.txt), run on the files as they are ----------------

TOOLS = Path(sys.executable).parent


def _run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOOLS / name), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_compose_files_are_valid_under_the_compose_specification() -> None:
    result = _run_tool(
        "check-jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        str(ROOT / "docker-compose.yml"),
        str(GPU_OVERLAY_PATH),
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = _run_tool("hadolint", "--no-color", str(dockerfile))

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_secrets_folder_never_reaches_the_image_builder() -> None:
    assert is_ignored("secrets/api_keys.txt", dockerignore_patterns())
    assert not is_ignored("services/search/Dockerfile", dockerignore_patterns())
