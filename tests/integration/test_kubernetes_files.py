"""Static checks of infra/k8s: both overlays build with `kubectl kustomize`, every resource they
build validates against the Kubernetes schemas (kubernetes-validate, strict), and the manifests
agree with the services: ports, probes, settings, addresses, secrets, the prod topology.

Each check is a function returning the problems it finds, tried here on a broken copy too, so a
check that cannot fail does not pass for one."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deployment_settings import load_settings, settings_class, unknown_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
OVERLAYS = ("dev", "prod")
#: The Kubernetes release the manifests are validated for (kubernetes-validate 1.37.0 bundles the
#: schemas of 1.25 to 1.37): native gRPC probes are GA since 1.27, autoscaling/v2 since 1.23.
KUBERNETES_VERSION = "1.32.0"
#: The featurelens services: each is a Deployment running the image featurelens/<service>.
SERVICES = ("encoder", "sae", "search", "labelling", "family", "gateway")
HTTP_SERVICES = {"gateway": "/api/v1/health"}
PLACEHOLDER = "REPLACE-ME"
Resources = list[dict[str, Any]]
Checker = Callable[[Resources], list[str]]

KUBECTL = shutil.which("kubectl") or "/usr/local/bin/kubectl"
needs_kubectl = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


def kustomize(folder: Path) -> Resources:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


_BUILT: dict[str, Resources] = {}


def built(overlay: str) -> Resources:
    """The resources of an overlay as `kubectl kustomize` builds them (a fresh copy each time)."""
    if overlay not in _BUILT:
        _BUILT[overlay] = kustomize(K8S / "overlays" / overlay)
    return copy.deepcopy(_BUILT[overlay])


# -- reading the built resources -------------------------------------------------------------------


def of_kind(resources: Resources, kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def service_deployments(resources: Resources) -> dict[str, dict[str, Any]]:
    """The Deployment of each featurelens service, by service (found by its image)."""
    found = {}
    for deployment in of_kind(resources, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            match = re.fullmatch(r"featurelens/([a-z]+):[\w.-]+", container["image"])
            if match:
                found[match[1]] = deployment
    return found


def main_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == deployment["metadata"]["name"])


def container_env(resources: Resources, container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets from its ConfigMaps (envFrom) and its own literal env."""
    config_maps = of_kind(resources, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        if name is not None:
            env.update(config_maps.get(name, {}).get("data", {}))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def container_port(container: dict[str, Any], port: int | str) -> int | None:
    """A port (a number or a port name) as the container's port number; None if it has no such port."""
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            return int(declared["containerPort"])
    return None


def probe_target(probe: dict[str, Any]) -> tuple[str, int | str, str]:
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            return kind, probe[kind]["port"], probe[kind].get("path", "")
    return "exec", "", ""


def selects(service: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


# -- the checks ------------------------------------------------------------------------------------


def schema_problems(resources: Resources) -> list[str]:
    problems = []
    for resource in resources:
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            problems.append(f"{name}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{name}: {error.message}")
    return problems


def service_part_problems(resources: Resources) -> list[str]:
    """Each featurelens service: a Deployment, a Service in front of it, and readiness and liveness
    probes asking the service's health (gRPC health, or the gateway's HTTP health endpoint)."""
    deployments = service_deployments(resources)
    services = list(of_kind(resources, "Service").values())
    problems = [f"{s}: no Deployment runs featurelens/{s}" for s in SERVICES if s not in deployments]
    for service, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if not any(selects(s, labels) for s in services):
            problems.append(f"{service}: no Service selects its pods")
        container = main_container(deployment)
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                problems.append(f"{service}: no {probe}")
                continue
            kind, _, path = probe_target(container[probe])
            wanted = ("httpGet", HTTP_SERVICES[service]) if service in HTTP_SERVICES else ("grpc", "")
            if (kind, path) != wanted:
                problems.append(f"{service}: {probe} is {kind} {path}, not {' '.join(wanted)}")
    return problems


def port_problems(resources: Resources) -> list[str]:
    """The container listens where the service does (its PORT setting, default or configured); the
    probes and the Service's targetPort reach that port, and the Service offers the same number."""
    problems = []
    services = list(of_kind(resources, "Service").values())
    for service, deployment in service_deployments(resources).items():
        container = main_container(deployment)
        configured = container_env(resources, container).get(f"FEATURELENS_{service.upper()}_PORT")
        listening = int(configured) if configured else settings_class(service)().port
        # The metrics port (metrics_problems) is the only other one a container may declare.
        declared = [int(p["containerPort"]) for p in container.get("ports", []) if p.get("name") != "metrics"]
        if declared != [listening]:
            problems.append(f"{service}: container ports {declared}, the service listens on {listening}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if (
                probe in container
                and container_port(container, probe_target(container[probe])[1]) != listening
            ):
                problems.append(f"{service}: {probe} does not reach port {listening}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for front in (s for s in services if selects(s, labels)):
            for port in front["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if container_port(container, target) != listening or port["port"] != listening:
                    problems.append(
                        f"{service}: Service {front['metadata']['name']} port {port} misses {listening}"
                    )
    return problems


def metrics_problems(resources: Resources) -> list[str]:
    """Every service's pods ask Prometheus to scrape the port where they serve /metrics: a gRPC
    service's METRICS_PORT (set, and declared as the container port named "metrics"), the
    gateway's HTTP port."""
    problems = []
    for service, deployment in service_deployments(resources).items():
        container = main_container(deployment)
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            problems.append(f"{service}: no prometheus.io/scrape annotation")
            continue
        env = container_env(resources, container)
        if service in HTTP_SERVICES:
            configured = env.get(f"FEATURELENS_{service.upper()}_PORT")
            serving = int(configured) if configured else settings_class(service)().port
        else:
            serving = int(env.get(f"FEATURELENS_{service.upper()}_METRICS_PORT", "0"))
            if not serving:
                problems.append(f"{service}: no FEATURELENS_{service.upper()}_METRICS_PORT")
                continue
            if container_port(container, "metrics") != serving:
                problems.append(f"{service}: no container port named metrics at {serving}")
        if annotations.get("prometheus.io/port") != str(serving):
            problems.append(
                f"{service}: prometheus.io/port is {annotations.get('prometheus.io/port')}, "
                f"/metrics is served on {serving}"
            )
    return problems


def setting_problems(resources: Resources) -> list[str]:
    """Every variable a featurelens container gets is a FEATURELENS_<SERVICE>_<FIELD> of its service
    with a value that parses (the rule docker-compose.yml is held to)."""
    problems = []
    for service, deployment in service_deployments(resources).items():
        env = container_env(resources, main_container(deployment))
        problems += [
            f"{service}: {key} is no featurelens setting" for key in env if not key.startswith("FEATURELENS_")
        ]
        problems += [f"{service}: {key} is no setting of {service}" for key in unknown_settings(env, service)]
        if not unknown_settings(env, service):
            try:
                load_settings(env, service)
            except ValueError as error:
                problems.append(f"{service}: {error}")
    return problems


_ADDRESS = re.compile(r"^(?:[a-z]+://)?(?P<host>[a-z0-9.-]+):(?P<port>\d+)(?:/.*)?$")


def address_problems(resources: Resources) -> list[str]:
    """Every *_ADDRESS and *_URL setting names a Service of these resources and a port it offers."""
    offered = {
        name: {p["port"] for p in s["spec"]["ports"]} for name, s in of_kind(resources, "Service").items()
    }
    problems = []
    for service, deployment in service_deployments(resources).items():
        for key, value in container_env(resources, main_container(deployment)).items():
            if not key.endswith(("_ADDRESS", "_URL")) or not value:
                continue
            match = _ADDRESS.match(value)
            if match is None or int(match["port"]) not in offered.get(match["host"], set()):
                problems.append(f"{service}: {key}={value} names no Service port")
    return problems


def secret_problems(resources: Resources) -> list[str]:
    """A variable naming a file under /run/secrets/ names a file a mounted Secret puts there."""
    problems = []
    secrets = of_kind(resources, "Secret")
    for service, deployment in service_deployments(resources).items():
        pod = deployment["spec"]["template"]["spec"]
        container = main_container(deployment)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        files = set()
        for mount in container.get("volumeMounts", []):
            source = volumes.get(mount["name"], {}).get("secret")
            if source is None or source["secretName"] not in secrets:
                continue
            keys = (
                secrets[source["secretName"]].get("data")
                or secrets[source["secretName"]].get("stringData")
                or {}
            )
            items = source.get("items") or [{"key": k, "path": k} for k in keys]
            files |= {f"{mount['mountPath']}/{item['path']}" for item in items if item["key"] in keys}
        for key, value in container_env(resources, container).items():
            if value.startswith("/run/secrets/") and value not in files:
                problems.append(f"{service}: {key}={value} is no file of a mounted Secret")
    return problems


def gpu_problems(resources: Resources, gpu_services: set[str]) -> list[str]:
    """nvidia.com/gpu limits on exactly the containers of ``gpu_services``."""
    with_gpu = set()
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in of_kind(resources, kind).items():
            for container in workload["spec"]["template"]["spec"]["containers"]:
                if "nvidia.com/gpu" in container.get("resources", {}).get("limits", {}):
                    with_gpu.add(name)
    return (
        []
        if with_gpu == gpu_services
        else [f"GPU limits on {sorted(with_gpu)}, wanted {sorted(gpu_services)}"]
    )


def qdrant_cluster_problems(resources: Resources, nodes: int) -> list[str]:
    """Qdrant as a cluster of ``nodes`` peers: cluster mode on, the P2P port on the headless Service
    that governs the StatefulSet, every shard replicated."""
    qdrant = of_kind(resources, "StatefulSet").get("qdrant")
    if qdrant is None:
        return ["no qdrant StatefulSet"]
    problems = (
        []
        if qdrant["spec"].get("replicas") == nodes
        else [f"qdrant has {qdrant['spec'].get('replicas')} replicas"]
    )
    container = main_container(qdrant)
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if env.get("QDRANT__CLUSTER__ENABLED") != "true":
        problems.append("qdrant: cluster mode is off")
    if int(env.get("QDRANT__STORAGE__COLLECTION__REPLICATION_FACTOR") or 1) < 2:
        problems.append("qdrant: collections are not replicated")
    headless = of_kind(resources, "Service").get(qdrant["spec"]["serviceName"], {})
    p2p = int(env.get("QDRANT__CLUSTER__P2P__PORT") or 6335)
    if headless.get("spec", {}).get("clusterIP") != "None" or p2p not in {
        p["port"] for p in headless["spec"]["ports"]
    }:
        problems.append(f"qdrant: the governing Service is not headless with the P2P port {p2p}")
    if container_port(container, p2p) is None:
        problems.append(f"qdrant: the container does not declare the P2P port {p2p}")
    script = " ".join(container.get("args", []))
    if "--bootstrap" not in script or "--uri" not in script:
        problems.append("qdrant: the peers are not started with --uri / --bootstrap")
    return problems


def autoscaling_problems(resources: Resources, scaled: set[str]) -> list[str]:
    """An HPA for each Deployment of ``scaled`` (that exists), which sets no replica count of its own."""
    deployments = of_kind(resources, "Deployment")
    targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(resources, "HorizontalPodAutoscaler").values()
    }
    problems = [f"{name}: no HPA" for name in sorted(scaled - targets)]
    problems += [f"HPA of {name}: no such Deployment" for name in sorted(targets - set(deployments))]
    problems += [
        f"{name}: sets replicas under an HPA"
        for name in sorted(targets)
        if "replicas" in deployments.get(name, {}).get("spec", {})
    ]
    return problems


def replica_problems(resources: Resources, count: int) -> list[str]:
    return [
        f"{r['kind']} {r['metadata']['name']} has {r['spec'].get('replicas')} replicas"
        for r in resources
        if r["kind"] in ("Deployment", "StatefulSet") and r["spec"].get("replicas") != count
    ]


# -- the overlays as they are ----------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_builds_and_every_resource_is_valid_kubernetes(overlay: str) -> None:
    resources = built(overlay)

    assert resources
    assert schema_problems(resources) == []


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    "check",
    [
        service_part_problems,
        port_problems,
        metrics_problems,
        setting_problems,
        address_problems,
        secret_problems,
    ],
)
def test_an_overlay_agrees_with_the_services(overlay: str, check: Checker) -> None:
    assert check(built(overlay)) == []


@needs_kubectl
def test_dev_runs_everything_once_on_cpu() -> None:
    resources = built("dev")

    assert replica_problems(resources, 1) == []
    assert gpu_problems(resources, set()) == []
    assert of_kind(resources, "HorizontalPodAutoscaler") == {}


@needs_kubectl
def test_prod_runs_a_qdrant_cluster_autoscaled_search_and_encoder_and_sae_on_a_gpu() -> None:
    resources = built("prod")
    sae = main_container(service_deployments(resources)["sae"])

    assert qdrant_cluster_problems(resources, nodes=3) == []
    assert autoscaling_problems(resources, {"search", "encoder"}) == []
    assert gpu_problems(resources, {"sae"}) == []
    assert container_env(resources, sae)["FEATURELENS_SAE_DEVICE"] == "cuda"
    assert sae["image"].endswith("-cuda")
    # The services that create collections shard them over the three nodes, each shard on two.
    for service in ("search", "labelling", "family"):
        env = container_env(resources, main_container(service_deployments(resources)[service]))
        prefix = f"FEATURELENS_{service.upper()}_QDRANT_"
        assert (env[prefix + "SHARD_NUMBER"], env[prefix + "REPLICATION_FACTOR"]) == ("3", "2")


@needs_kubectl
def test_redis_keeps_no_data() -> None:
    redis = main_container(of_kind(built("prod"), "Deployment")["redis"])

    assert "volumeMounts" not in redis
    assert redis["args"][:4] == ["--save", "", "--appendonly", "no"]


@needs_kubectl
def test_the_committed_api_keys_are_placeholders_and_an_overlay_can_replace_them(tmp_path: Path) -> None:
    # The README's way to deploy real keys: an overlay of one's own that replaces the Secret.
    (tmp_path / "api_keys.txt").write_text("key-one\nkey-two\n")
    (tmp_path / "peer_api_key.txt").write_text("key-one\n")
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(K8S / "overlays" / "prod", tmp_path)],
                "secretGenerator": [
                    {
                        "name": "featurelens-api-keys",
                        "behavior": "replace",
                        "files": ["api_keys=api_keys.txt", "peer_api_key=peer_api_key.txt"],
                    }
                ],
            }
        )
    )
    committed = [s for s in of_kind(built("prod"), "Secret").values()]
    mine = kustomize(tmp_path)

    assert [set(s.get("data", {}).values()) for s in committed] == [{_b64(PLACEHOLDER)}]
    assert secret_problems(mine) == []
    assert {_b64("key-one\n"), _b64("key-one\nkey-two\n")} == set(
        next(iter(of_kind(mine, "Secret").values()))["data"].values()
    )


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


# -- every check catches the mistake it is for -----------------------------------------------------


def _deployment(resources: Resources, service: str) -> dict[str, Any]:
    return service_deployments(resources)[service]


def _config(resources: Resources, service: str) -> dict[str, str]:
    name = main_container(_deployment(resources, service))["envFrom"][0]["configMapRef"]["name"]
    return of_kind(resources, "ConfigMap")[name]["data"]


def _broken() -> Iterator[tuple[str, Checker, Callable[[Resources], None]]]:
    def no_readiness(r: Resources) -> None:
        del main_container(_deployment(r, "search"))["readinessProbe"]

    def http_liveness_on_grpc(r: Resources) -> None:
        main_container(_deployment(r, "encoder"))["livenessProbe"] = {"tcpSocket": {"port": 50051}}

    def no_gateway(r: Resources) -> None:
        r.remove(_deployment(r, "gateway"))

    def wrong_container_port(r: Resources) -> None:
        main_container(_deployment(r, "encoder"))["ports"][0]["containerPort"] = 50099

    def wrong_service_port(r: Resources) -> None:
        of_kind(r, "Service")["sae"]["spec"]["ports"][0]["port"] = 50099

    def misspelt_setting(r: Resources) -> None:
        _config(r, "search")["FEATURELENS_SEARCH_ENCODER_ADRESS"] = "encoder:50051"

    def other_service_setting(r: Resources) -> None:
        _config(r, "family")["FEATURELENS_SEARCH_MAX_TOP_K"] = "10"

    def bad_value(r: Resources) -> None:
        _config(r, "sae")["FEATURELENS_SAE_DEVICE"] = "tpu"

    def wrong_address(r: Resources) -> None:
        _config(r, "labelling")["FEATURELENS_LABELLING_SEARCH_ADDRESS"] = "search:50052"

    def wrong_redis(r: Resources) -> None:
        _config(r, "encoder")["FEATURELENS_ENCODER_REDIS_URL"] = "redis://cache:6379/0"

    def unmounted_secret(r: Resources) -> None:
        pod = _deployment(r, "encoder")["spec"]["template"]["spec"]
        pod["volumes"][0]["secret"]["items"] = [{"key": "peer_api_key", "path": "peer_api_key"}]

    def wrong_scrape_port(r: Resources) -> None:
        annotations = _deployment(r, "search")["spec"]["template"]["metadata"]["annotations"]
        annotations["prometheus.io/port"] = "50053"

    def no_metrics_port(r: Resources) -> None:
        del _config(r, "family")["FEATURELENS_FAMILY_METRICS_PORT"]

    def invalid_schema(r: Resources) -> None:
        _deployment(r, "search")["spec"]["replicas"] = "two"

    def unknown_field(r: Resources) -> None:
        main_container(_deployment(r, "search"))["readinessProbes"] = {}

    yield "no readiness probe", service_part_problems, no_readiness
    yield "liveness not through gRPC health", service_part_problems, http_liveness_on_grpc
    yield "a service missing", service_part_problems, no_gateway
    yield "container port", port_problems, wrong_container_port
    yield "Service port", port_problems, wrong_service_port
    yield "scrape annotation on the wrong port", metrics_problems, wrong_scrape_port
    yield "no metrics port", metrics_problems, no_metrics_port
    yield "misspelt setting", setting_problems, misspelt_setting
    yield "another service's setting", setting_problems, other_service_setting
    yield "a value that does not parse", setting_problems, bad_value
    yield "address with the wrong port", address_problems, wrong_address
    yield "URL of no Service", address_problems, wrong_redis
    yield "key file not mounted", secret_problems, unmounted_secret
    yield "schema: wrong type", schema_problems, invalid_schema
    yield "schema: unknown field (strict)", schema_problems, unknown_field


@needs_kubectl
@pytest.mark.parametrize(("mistake", "check", "break_it"), list(_broken()), ids=[b[0] for b in _broken()])
def test_a_check_reports_the_mistake_it_is_for(
    mistake: str, check: Checker, break_it: Callable[[Resources], None]
) -> None:
    resources = built("prod")
    break_it(resources)

    assert check(resources), f"{check.__name__} missed: {mistake}"


@needs_kubectl
def test_the_topology_checks_report_a_broken_prod() -> None:
    resources = built("prod")
    qdrant = of_kind(resources, "StatefulSet")["qdrant"]
    qdrant["spec"]["replicas"] = 1
    main_container(qdrant)["env"] = []
    resources.remove(of_kind(resources, "HorizontalPodAutoscaler")["encoder"])
    search = _deployment(resources, "search")
    main_container(search)["resources"]["limits"]["nvidia.com/gpu"] = 1

    assert len(qdrant_cluster_problems(resources, nodes=3)) == 3  # replicas, cluster mode, replication
    assert autoscaling_problems(resources, {"search", "encoder"}) == ["encoder: no HPA"]
    assert gpu_problems(resources, {"sae"})
    assert replica_problems(built("prod"), 1)  # 3 Qdrant nodes
    search["spec"]["replicas"] = 3
    assert autoscaling_problems(resources, {"search"}) == ["search: sets replicas under an HPA"]
