"""The Kubernetes manifests (deploy/kubernetes): every overlay rendered by ``kubectl kustomize``
and checked against the Kubernetes API schemas (``kubernetes-validate``, strict: an unknown
field fails), then for what corral needs of them: no secret in a ConfigMap, probes on routes
corral serves without a key, non-root pods with nothing to escalate, resources set, a grace
period longer than the drain, workers from the CPU limit, selectors that select."""

from __future__ import annotations

import copy
import math
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from corral.cli.main import parser
from corral.config.loader import parse_config
from corral.http.app import create_app
from corral.supervisor.supervisor import KILL_GRACE
from tests.deploy.manifests import (
    OVERLAYS,
    PLACEHOLDER,
    Rendering,
    env_refs,
    leaves,
    placeholder_secret,
    render,
)

# the oldest Kubernetes still commonly run and the newest the validator knows
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CORE_GROUPS = ("v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")
SECRET_KEYS = ("master_key", "database_url", "redis_url", "api_key")
TEST_ENV = {  # what the Secret holds once patched (test values)
    "CORRAL_MASTER_KEY": "sk-deploy-test-master-key-0123456789",
    "CORRAL_ENCRYPTION_KEY": "unused-by-the-loader",
    "CORRAL_DATABASE_URL": "postgresql://corral:pw@corral-postgres:5432/corral",
    "CORRAL_REDIS_URL": "redis://:pw@corral-redis:6379/0",
    "OLLAMA_API_KEY": "ollama-cloud-test-key",
    "CORRAL_WORKERS": "2",
}


def config_of(rendering: Rendering, env: dict[str, str] | None = None) -> Any:
    return parse_config(
        yaml.safe_load(rendering.config_text()),
        source=f"{rendering.overlay}: ConfigMap corral-config",
        env=TEST_ENV if env is None else env,
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_passes_the_kubernetes_schemas(overlay: str) -> None:
    rendering = render(overlay)
    assert rendering.docs
    for doc in rendering.docs:
        if doc["kind"] == "ServiceMonitor":
            continue  # a CRD: not in the core schemas (its shape is checked below)
        assert doc["apiVersion"] in CORE_GROUPS, f"{doc['kind']} {doc['apiVersion']}"
        assert doc["metadata"]["namespace"] == "corral", doc["metadata"]
        for version in VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_placeholder_secret_passes_the_schemas_and_holds_no_value() -> None:
    secret = placeholder_secret()
    for version in VERSIONS:
        kubernetes_validate.validate(secret, version, strict=True)
    assert secret["kind"] == "Secret" and "data" not in secret
    assert set(secret["stringData"].values()) == {PLACEHOLDER}


def test_the_schema_check_refuses_a_field_kubernetes_does_not_know() -> None:
    """The validation above can fail: a misspelt security setting is caught."""
    deployment = copy.deepcopy(render("base").one("Deployment", "corral"))
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFileSystem"] = context.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_config_map_holds_a_secret(overlay: str) -> None:
    rendering = render(overlay)
    assert not rendering.all("Secret"), "the Secret is created once and patched, never applied with -k"
    text = rendering.config_text()
    values = {v for k, v in TEST_ENV.items() if k in placeholder_secret()["stringData"]} | {PLACEHOLDER}
    for config_map in rendering.all("ConfigMap"):
        for content in config_map.get("data", {}).values():
            assert not any(v in content for v in values)
    for path, value in leaves(yaml.safe_load(text)):
        key = path.rsplit(".", 1)[-1]
        if key in SECRET_KEYS:
            assert isinstance(value, str) and value.startswith("os.environ/"), f"{path}: {value!r}"
        if isinstance(value, str) and "://" in value:
            assert "@" not in urlsplit(value).netloc, f"{path}: credentials in a URL"
        assert "authorization" not in path.lower(), f"{path}: a header with a credential"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_map_is_a_config_corral_accepts_with_the_secret_set(overlay: str) -> None:
    config = config_of(render(overlay))
    assert config.master_key == TEST_ENV["CORRAL_MASTER_KEY"]
    assert config.database_url == TEST_ENV["CORRAL_DATABASE_URL"]
    assert config.redis_url == TEST_ENV["CORRAL_REDIS_URL"]
    assert config.server.host == "0.0.0.0"  # reachable by the Service and the kubelet's probes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_secret_supplies_every_variable_the_config_names(overlay: str) -> None:
    rendering = render(overlay)
    gateway = rendering.gateway()
    secret = placeholder_secret()
    assert [s["secretRef"]["name"] for s in gateway["envFrom"]] == [secret["metadata"]["name"]]
    named = env_refs(rendering.config_text())
    assert named <= set(secret["stringData"]), named - set(secret["stringData"])
    # and nothing refers to a key the Secret lacks
    for _, spec in rendering.pod_templates():
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_read_only_with_nothing_to_escalate_and_resources_set(overlay: str) -> None:
    for name, spec in render(overlay).pod_templates():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{name}: {kind}"


def test_the_image_runs_as_the_user_the_pod_asks_for() -> None:
    from tests.deploy.test_dockerfile import final_stage_user

    spec = render("base").one("Deployment", "corral")["spec"]["template"]["spec"]
    uid, gid = final_stage_user()
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (uid, gid)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_outlasts_the_drain(overlay: str) -> None:
    rendering = render(overlay)
    spec = rendering.one("Deployment", "corral")["spec"]["template"]["spec"]
    pre_stop = rendering.gateway()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # the supervisor gives its workers shutdown_timeout to drain, then KILL_GRACE before it
    # kills one and exits: all of it must fit before the kubelet's SIGKILL
    drain = float(pre_stop[1]) + config_of(rendering).server.shutdown_timeout + KILL_GRACE
    assert spec["terminationGracePeriodSeconds"] > drain


def _cpus(quantity: str) -> int:
    """limits.cpu as ``resourceFieldRef`` with divisor 1 gives it: whole CPUs, rounded up."""
    value = int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    return math.ceil(value)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_workers_follow_the_cpu_limit(overlay: str) -> None:
    gateway = render(overlay).gateway()
    (workers,) = [e for e in gateway["env"] if e["name"] == "CORRAL_WORKERS"]
    field = workers["valueFrom"]["resourceFieldRef"]
    assert field == {"containerName": "corral", "resource": "limits.cpu", "divisor": "1"}
    limit = gateway["resources"]["limits"]["cpu"]  # without a limit it would be the node's CPUs
    assert gateway["resources"]["requests"]["cpu"] == limit
    # the args are the image's `corral serve` arguments, with $(CORRAL_WORKERS) expanded
    expanded = [a.replace("$(CORRAL_WORKERS)", str(_cpus(limit))) for a in gateway["args"]]
    args = parser().parse_args(["serve", *expanded])
    assert int(args.workers) == _cpus(limit) == 2
    assert args.config == "/etc/corral/corral.yaml"
    mounts = {m["mountPath"]: m["name"] for m in gateway["volumeMounts"]}
    assert mounts["/etc/corral"] == "config"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_routes_the_data_plane_serves_without_a_key(overlay: str) -> None:
    rendering = render(overlay)
    config = config_of(rendering)
    table = create_app(config, TEST_ENV["CORRAL_MASTER_KEY"]).data
    gateway = rendering.gateway()
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    probes = {k: gateway[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind, probe in probes.items():
        get = probe["httpGet"]
        assert ports[get["port"]] == config.server.port, kind
        route = table.match("GET", get["path"]).route
        assert route is not None and route.access == "open", f"{kind}: {get['path']}"
        assert probe["timeoutSeconds"] < probe["periodSeconds"] or kind == "startupProbe"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_budgets_and_the_autoscaler_select_the_gateway_pods(overlay: str) -> None:
    rendering = render(overlay)
    deployment = rendering.one("Deployment", "corral")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in rendering.gateway()["ports"]}

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector.items() <= labels.items())

    service = rendering.one("Service", "corral")
    assert selects(service["spec"]["selector"])
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"] and "http" in ports
    assert selects(rendering.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    budget = rendering.one("PodDisruptionBudget")["spec"]["minAvailable"]
    hpa = rendering.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "corral"}
    assert hpa["minReplicas"] >= 2 and hpa["minReplicas"] > budget
    assert "replicas" not in deployment["spec"], "the autoscaler owns it; apply would reset it"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    policy = rendering.one("NetworkPolicy", "corral")["spec"]
    assert selects(policy["podSelector"]["matchLabels"])
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [4000]


def test_the_bundled_databases_answer_only_the_gateway() -> None:
    rendering = render("overlays/postgres-redis")
    gateway_labels = rendering.one("Deployment", "corral")["spec"]["template"]["metadata"]["labels"]
    for name, port in (("corral-postgres", 5432), ("corral-redis", 6379)):
        workload = rendering.one("StatefulSet", name)
        assert workload["spec"]["replicas"] == 1
        service = rendering.one("Service", name)
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (rule,) = rendering.one("NetworkPolicy", name)["spec"]["ingress"]
        (source,) = rule["from"]
        assert source["podSelector"]["matchLabels"].items() <= gateway_labels.items()
        assert [p["port"] for p in rule["ports"]] == [port]
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert PLACEHOLDER in container["args"][0], f"{name} must refuse the placeholder password"
    urls = placeholder_secret()["stringData"]
    assert set(urls) >= {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}


def test_the_service_monitor_scrapes_the_control_planes_metrics_route() -> None:
    """The ServiceMonitor is a CRD of the Prometheus Operator: its shape is checked here, and
    that it reaches /metrics through a Service port, a container port and a NetworkPolicy."""
    rendering = render("overlays/monitoring")
    monitor = rendering.one("ServiceMonitor", "corral")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    services = [
        s
        for s in rendering.all("Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in services] == ["corral-metrics"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
    assert endpoint["path"] == "/metrics" and endpoint["scheme"] == "http"
    (service_port,) = [p for p in services[0]["spec"]["ports"] if p["name"] == endpoint["port"]]
    ports = {p["name"]: p["containerPort"] for p in rendering.gateway()["ports"]}
    config = config_of(rendering)
    assert ports[service_port["targetPort"]] == config.admin.port
    assert config.admin.host == "0.0.0.0" and not config.server.metrics_auth
    app = create_app(config, TEST_ENV["CORRAL_MASTER_KEY"]).control
    assert any(r.method == "GET" and r.resource is not None and r.resource.canonical == "/metrics"
               for r in app.router.routes())  # fmt: skip
    policy = rendering.one("NetworkPolicy", "corral-metrics")["spec"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert source["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    assert [p["port"] for p in rule["ports"]] == [config.admin.port]


def test_the_monitoring_config_differs_from_the_base_in_the_listener_keys_alone() -> None:
    base = yaml.safe_load(render("base").config_text())
    monitoring = yaml.safe_load(render("overlays/monitoring").config_text())
    assert monitoring["admin"] == {**base["admin"], "host": "0.0.0.0", "allow_insecure_remote": True}
    assert monitoring["server"] == {**base["server"], "metrics_auth": False}
    strip = ("admin", "server")
    assert {k: v for k, v in monitoring.items() if k not in strip} == {
        k: v for k, v in base.items() if k not in strip
    }
    # without the override the control plane would refuse the pod's address over plain HTTP
    del monitoring["admin"]["allow_insecure_remote"]
    with pytest.raises(Exception, match="allow_insecure_remote"):
        parse_config(monitoring, source="monitoring", env=TEST_ENV)


def test_the_placeholder_secret_cannot_start_a_gateway(tmp_path: Any) -> None:
    """Applied before it is patched, every placeholder is refused, naming what to set."""
    from corral.errors import ConfigError
    from corral.security.crypto import load_crypto
    from corral.store.db import normalize_url

    placeholders = dict(placeholder_secret()["stringData"])
    with pytest.raises(ConfigError, match="master_key: is shorter than 16 characters"):
        config_of(render("base"), {**placeholders, "CORRAL_WORKERS": "2"})
    with pytest.raises(ConfigError, match="CORRAL_ENCRYPTION_KEY is not a Fernet key"):
        load_crypto(placeholders, tmp_path)
    with pytest.raises(ConfigError, match="CORRAL_DATABASE_URL: unsupported database URL"):
        normalize_url(placeholders["CORRAL_DATABASE_URL"])
