"""deploy/k8s, rendered by `kubectl kustomize` exactly as `kubectl apply -k` would send it.

Every object of a built-in API group is validated against the Kubernetes OpenAPI schemas
(strict: unknown fields are errors) that kubernetes-validate ships, for the oldest and the
newest Kubernetes release it is checked against. The custom resources (CloudNativePG's
Cluster and Pooler, KEDA's ScaledObject and TriggerAuthentication) are checked field by
field here. Beyond the schemas, the tests hold the manifests to what botter needs: names
and namespace, probes on the right paths and ports, the HPA's exact spec, connection
strings that go through PgBouncer only where that is safe, a connection budget that fits
max_connections, settings botter actually reads, and NetworkPolicies that let through
exactly the traffic the design calls for (evaluated here, rule by rule).
"""

import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import psycopg
import pytest

from botter.config import Settings
from botter.db.engine import libpq_url

try:
    import yaml
except ImportError:  # reported by the `rendered` fixture, naming the package
    yaml = None  # type: ignore[assignment]

try:
    import kubernetes_validate
except ImportError:  # reported by test_builtin_objects_match_the_kubernetes_schemas
    kubernetes_validate = None

REPO: Final = Path(__file__).resolve().parents[2]
KUSTOMIZATION: Final = REPO / "deploy" / "k8s"
NAMESPACE: Final = "botter"
IMAGE: Final = "botter:0.1.0"
MISSING_PACKAGE: Final = (
    "{package} is not installed in the virtualenv: pin kubernetes-validate==1.37.0 and its "
    "dependencies (PyYAML, jsonschema, referencing, ...) in requirements.lock, then make install"
)
# The oldest Kubernetes release the manifests are meant for, and the newest schemas
# kubernetes-validate 1.37 ships.
KUBERNETES_VERSIONS: Final = ("1.29.0", "1.37.0")
BUILTIN_API_VERSIONS: Final = {
    "v1",
    "apps/v1",
    "autoscaling/v2",
    "policy/v1",
    "networking.k8s.io/v1",
    "batch/v1",
}
CUSTOM_KINDS: Final = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "Pooler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
CLUSTER_SCOPED: Final = {"Namespace"}
WEB_LABELS: Final = {"app.kubernetes.io/name": "botter", "app.kubernetes.io/component": "web"}
WORKER_LABELS: Final = {
    "app.kubernetes.io/name": "botter",
    "app.kubernetes.io/component": "worker",
}
# PgBouncer settings CloudNativePG's admission webhook accepts in a Pooler
# (internal/webhook/v1/pooler_webhook.go, AllowedPgbouncerGenericConfigurationParameters).
CNPG_POOLER_PARAMETERS: Final = frozenset(
    [
        "application_name_add_host",
        "auth_type",
        "autodb_idle_timeout",
        "cancel_wait_timeout",
        "client_idle_timeout",
        "client_login_timeout",
        "client_tls_sslmode",
        "default_pool_size",
        "disable_pqexec",
        "dns_max_ttl",
        "dns_nxdomain_ttl",
        "idle_transaction_timeout",
        "ignore_startup_parameters",
        "listen_backlog",
        "log_connections",
        "log_disconnections",
        "log_pooler_errors",
        "log_stats",
        "max_client_conn",
        "max_db_connections",
        "max_packet_size",
        "max_prepared_statements",
        "max_user_connections",
        "min_pool_size",
        "pkt_buf",
        "query_timeout",
        "query_wait_timeout",
        "reserve_pool_size",
        "reserve_pool_timeout",
        "sbuf_loopcnt",
        "server_check_delay",
        "server_check_query",
        "server_connect_timeout",
        "server_fast_close",
        "server_idle_timeout",
        "server_lifetime",
        "server_login_retry",
        "server_reset_query",
        "server_reset_query_always",
        "server_round_robin",
        "server_tls_ciphers",
        "server_tls_protocols",
        "server_tls_sslmode",
        "stats_period",
        "suspend_timeout",
        "tcp_defer_accept",
        "tcp_socket_buffer",
        "tcp_keepalive",
        "tcp_keepcnt",
        "tcp_keepidle",
        "tcp_keepintvl",
        "tcp_user_timeout",
        "track_extra_parameters",
        "verbose",
    ]
)
CONTAINER_TMP: Final = "/tmp"  # noqa: S108 - inside the containers, a private emptyDir
# Connections PostgreSQL keeps for superusers, replication, backups and monitoring
# (docs/scaling.md).
RESERVED_CONNECTIONS: Final = 10

Obj = dict[str, Any]


# ---- rendering and lookup -------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    if yaml is None:
        pytest.fail(MISSING_PACKAGE.format(package="PyYAML (import yaml)"), pytrace=False)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: it renders deploy/k8s (kubectl kustomize)")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZATION)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize failed:\n{result.stderr}"
    objects = [document for document in yaml.safe_load_all(result.stdout) if document]
    assert objects, "kubectl kustomize rendered nothing"
    return objects


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def container(workload: Obj, name: str = "botter") -> Obj:
    matches = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    assert len(matches) == 1, f"{workload['metadata']['name']} has no container {name}"
    return matches[0]


def port_number(container_: Obj, port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container_.get("ports", []) if p.get("name") == port]
    assert numbers, f"container {container_['name']} has no port named {port}"
    return int(numbers[0])


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def env_of(container_: Obj) -> dict[str, Obj]:
    return {entry["name"]: entry for entry in container_.get("env", [])}


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    yield from of_kind(objects, "Deployment")
    yield from of_kind(objects, "Job")


def all_containers(workload: Obj) -> list[Obj]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def config_map(objects: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = find(objects, "ConfigMap", "botter-config")["data"]
    return data


def secret_value(objects: list[Obj], name: str, key: str) -> str:
    secret = find(objects, "Secret", name)
    value: str = secret["stringData"][key]
    return value


# ---- schemas and inventory ------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_objects_match_the_kubernetes_schemas(rendered: list[Obj], version: str) -> None:
    if kubernetes_validate is None:
        pytest.fail(MISSING_PACKAGE.format(package="kubernetes-validate"), pytrace=False)
    errors = []
    checked = 0
    for obj in rendered:
        if obj["apiVersion"] not in BUILTIN_API_VERSIONS:
            continue
        checked += 1
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(part) for part in error.path)
            errors.append(f"{obj['kind']} {obj['metadata']['name']}: {path}: {error.message}")
    assert not errors, "\n".join(errors)
    assert checked >= 20, f"only {checked} built-in objects were validated"


def test_every_object_is_a_known_kind_in_namespace_botter(rendered: list[Obj]) -> None:
    for obj in rendered:
        api_kind = (obj["apiVersion"], obj["kind"])
        assert obj["apiVersion"] in BUILTIN_API_VERSIONS or api_kind in CUSTOM_KINDS, (
            f"{api_kind} is neither schema-validated nor checked by these tests"
        )
        if obj["kind"] in CLUSTER_SCOPED:
            continue
        assert obj["metadata"].get("namespace") == NAMESPACE, (
            f"{obj['kind']} {obj['metadata']['name']} is not in namespace {NAMESPACE}"
        )
    assert find(rendered, "Namespace", NAMESPACE)


def test_the_names_operators_expect(rendered: list[Obj]) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    for expected in [
        ("Deployment", "botter-app"),
        ("Deployment", "botter-worker"),
        ("Service", "botter-app"),
        ("Ingress", "botter-app"),
        ("HorizontalPodAutoscaler", "botter-app-hpa"),
        ("Cluster", "botter-db-cluster"),
        ("Job", "botter-migrate"),
        ("ConfigMap", "botter-config"),
        ("Secret", "botter-secrets"),
    ]:
        assert expected in names, f"{expected} missing from the rendered manifests"


def test_references_between_objects_resolve(rendered: list[Obj]) -> None:
    """Every ConfigMap, Secret and key a pod reads, and the ServiceAccount it runs as."""
    for workload in workloads(rendered):
        spec = pod_spec(workload)
        if "serviceAccountName" in spec:
            find(rendered, "ServiceAccount", spec["serviceAccountName"])
        for container_ in all_containers(workload):
            for source in container_.get("envFrom", []):
                if "configMapRef" in source:
                    find(rendered, "ConfigMap", source["configMapRef"]["name"])
                if "secretRef" in source:
                    find(rendered, "Secret", source["secretRef"]["name"])
            for entry in container_.get("env", []):
                reference = entry.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    secret = find(rendered, "Secret", reference["name"])
                    assert reference["key"] in secret["stringData"], (
                        f"{workload['metadata']['name']}: no key {reference['key']} in "
                        f"Secret {reference['name']}"
                    )


# ---- images and pods ------------------------------------------------------------------


def test_images_are_pinned_and_botter_is_one_image(rendered: list[Obj]) -> None:
    for workload in workloads(rendered):
        for container_ in all_containers(workload):
            image = container_["image"]
            name, _, tag = image.rpartition(":")
            assert name, image
            assert tag, f"{image}: no tag"
            assert "/" not in tag, f"{image}: no tag"
            assert tag != "latest", f"{image}: pin a version, not latest"
            if container_["name"] in ("botter", "migrate"):
                assert image == IMAGE
    cluster_image = find(rendered, "Cluster", "botter-db-cluster")["spec"]["imageName"]
    assert cluster_image.rpartition(":")[2].startswith("16."), cluster_image


def test_pods_run_unprivileged_with_a_read_only_root(rendered: list[Obj]) -> None:
    for workload in workloads(rendered):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security.get("runAsUser", 1) != 0, name
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container_ in all_containers(workload):
            security = container_["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            resources = container_["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name


def test_botter_containers_get_a_writable_tmp(rendered: list[Obj]) -> None:
    """The root filesystem is read-only; BOTTER_DATA_DIR and Python's tempfiles use /tmp."""
    assert config_map(rendered)["BOTTER_DATA_DIR"].startswith(CONTAINER_TMP + "/")
    for name in ("botter-app", "botter-worker"):
        workload = find(rendered, "Deployment", name)
        mounts = {m["mountPath"]: m["name"] for m in container(workload)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert "emptyDir" in volumes[mounts[CONTAINER_TMP]]


# ---- the web instances ----------------------------------------------------------------


def test_web_probes_health_for_liveness_and_ready_for_readiness(rendered: list[Obj]) -> None:
    app = find(rendered, "Deployment", "botter-app")
    botter = container(app)
    assert botter["args"][0] == "serve"
    assert port_number(botter, "http") == 3000
    assert config_map(rendered)["PORT"] == "3000"
    probes = {
        kind: (
            botter[kind]["httpGet"]["path"],
            port_number(botter, botter[kind]["httpGet"]["port"]),
        )
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/health", 3000),
        "livenessProbe": ("/health", 3000),
        "readinessProbe": ("/ready", 3000),
    }
    # /ready answers within about a second (1 s deadline per check, run together).
    assert botter["readinessProbe"]["timeoutSeconds"] >= 2


def test_web_drains_before_sigterm_and_has_time_to_finish(rendered: list[Obj]) -> None:
    app = find(rendered, "Deployment", "botter-app")
    command = container(app)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = int(command[1])
    assert pre_stop_s >= 5
    # serve completes requests in flight for up to 20 s after SIGTERM (docs/settings.md).
    assert pod_spec(app)["terminationGracePeriodSeconds"] > pre_stop_s + 20
    assert app["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_web_replicas_belong_to_the_hpa(rendered: list[Obj]) -> None:
    assert "replicas" not in find(rendered, "Deployment", "botter-app")["spec"]


def test_service_reaches_the_web_pods_only(rendered: list[Obj]) -> None:
    service = find(rendered, "Service", "botter-app")
    app = find(rendered, "Deployment", "botter-app")
    worker = find(rendered, "Deployment", "botter-worker")
    selector = {"matchLabels": service["spec"]["selector"]}
    assert selects(selector, pod_labels(app))
    assert not selects(selector, pod_labels(worker))
    [port] = service["spec"]["ports"]
    assert port_number(container(app), port["targetPort"]) == 3000
    for other in of_kind(rendered, "Service"):
        assert not selects({"matchLabels": other["spec"]["selector"]}, pod_labels(worker)), (
            f"Service {other['metadata']['name']} selects the workers, which serve no one"
        )


def test_hpa_spec_is_exactly_as_specified(rendered: list[Obj]) -> None:
    hpa = find(rendered, "HorizontalPodAutoscaler", "botter-app-hpa")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "botter-app"},
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            },
            {
                "type": "Resource",
                "resource": {
                    "name": "memory",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            },
        ],
        "behavior": {
            "scaleDown": {
                "stabilizationWindowSeconds": 300,
                "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
            },
            "scaleUp": {
                "stabilizationWindowSeconds": 60,
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
            },
        },
    }
    find(rendered, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
    # Utilization is relative to requests: the target must request both.
    requests = container(find(rendered, "Deployment", "botter-app"))["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)


def test_ingress_publishes_only_the_webhook_over_tls(rendered: list[Obj]) -> None:
    ingress = find(rendered, "Ingress", "botter-app")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == (
        "10m"
    )
    tls_hosts = {host for entry in spec["tls"] for host in entry["hosts"]}
    assert all(entry["secretName"] for entry in spec["tls"])
    public_host = urlsplit(config_map(rendered)["PUBLIC_URL"]).hostname
    service = find(rendered, "Service", "botter-app")
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for rule in spec["rules"]:
        assert rule["host"] in tls_hosts
        assert rule["host"] == public_host, "Telegram is given PUBLIC_URL for its webhooks"
        for path in rule["http"]["paths"]:
            assert path["path"].startswith("/webhook/"), f"{path['path']} is published"
            backend = path["backend"]["service"]
            assert backend["name"] == "botter-app"
            assert backend["port"]["name"] in service_ports


# ---- the workers ----------------------------------------------------------------------


def test_worker_runs_worker_with_its_metrics_port_probed(rendered: list[Obj]) -> None:
    worker = find(rendered, "Deployment", "botter-worker")
    botter = container(worker)
    assert botter["args"] == ["worker"]
    metrics_port = int(config_map(rendered)["WORKER_METRICS_PORT"])
    assert port_number(botter, "metrics") == metrics_port
    for kind in ("startupProbe", "livenessProbe"):
        probe = botter[kind]["httpGet"]
        assert (probe["path"], port_number(botter, probe["port"])) == ("/metrics", metrics_port)
    # Running jobs get up to 10 s after SIGTERM.
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > 10


def test_worker_autoscaler_scales_on_queue_depth(rendered: list[Obj]) -> None:
    scaled = find(rendered, "ScaledObject", "botter-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "botter-worker",
    }
    # One worker is always the leader (sweeps, reminders, polling): never zero.
    assert spec["minReplicaCount"] >= 1
    assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "postgresql"
    metadata = trigger["metadata"]
    for required in ("host", "port", "userName", "dbName", "sslmode", "query"):
        assert metadata[required], required
    assert float(metadata["targetQueryValue"]) > 0
    assert metadata["host"].split(".")[0].startswith("botter-db-cluster-")
    assert metadata["dbName"] == "botter"
    query = " ".join(metadata["query"].split())
    assert "FROM jobs WHERE status = 'queued' AND run_at <= now()" in query
    assert "FROM update_inbox WHERE status = 'pending'" in query
    authentication = find(rendered, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    [password] = authentication["spec"]["secretTargetRef"]
    assert password["parameter"] == "password"
    credentials = find(rendered, "Secret", password["name"])
    assert password["key"] in credentials["stringData"]
    assert credentials["stringData"]["username"] == metadata["userName"]
    # KEDA makes the workers' HPA; a second one would fight it.
    for hpa in of_kind(rendered, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] != "botter-worker"


def test_queue_depth_query_counts_due_work_on_the_real_schema(
    rendered: list[Obj], database_url: str
) -> None:
    """The scaler's query runs on botter's migrated schema and counts only due work."""
    query = find(rendered, "ScaledObject", "botter-worker")["spec"]["triggers"][0]["metadata"][
        "query"
    ]
    with psycopg.connect(libpq_url(database_url)) as connection:
        row = connection.execute(query).fetchone()
        assert row is not None
        before = row[0]
        assert isinstance(before, int)
        connection.execute(
            "INSERT INTO jobs (kind, args, status, run_at) VALUES"
            " ('k8s-test', '{}', 'queued', now() - interval '1 minute'),"
            " ('k8s-test', '{}', 'queued', now()),"
            " ('k8s-test', '{}', 'queued', now() + interval '1 hour'),"
            " ('k8s-test', '{}', 'done', now() - interval '1 minute')"
        )
        row = connection.execute(query).fetchone()
        connection.rollback()
    assert row is not None
    assert row[0] == before + 2


# ---- the database ---------------------------------------------------------------------


def test_cnpg_cluster_as_specified(rendered: list[Obj]) -> None:
    cluster = find(rendered, "Cluster", "botter-db-cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["storage"]["size"] == "20Gi"
    parameters = spec["postgresql"]["parameters"]
    assert parameters["max_connections"] == "200"
    assert parameters["shared_buffers"] == "256MB"
    assert all(isinstance(value, str) for value in parameters.values())
    initdb = spec["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == ("botter", "botter")
    credentials = find(rendered, "Secret", initdb["secret"]["name"])
    assert credentials["type"] == "kubernetes.io/basic-auth"
    assert credentials["stringData"]["username"] == initdb["owner"]


def test_pooler_is_pgbouncer_in_transaction_mode_for_the_cluster(rendered: list[Obj]) -> None:
    [pooler] = of_kind(rendered, "Pooler")
    assert pooler["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = pooler["spec"]
    assert spec["cluster"]["name"] == "botter-db-cluster"
    assert pooler["metadata"]["name"] != spec["cluster"]["name"], "CNPG refuses that"
    assert spec["type"] == "rw"
    assert spec["instances"] >= 2
    assert spec["pgbouncer"]["poolMode"] == "transaction"
    parameters = spec["pgbouncer"]["parameters"]
    assert set(parameters) <= CNPG_POOLER_PARAMETERS, set(parameters) - CNPG_POOLER_PARAMETERS
    assert all(isinstance(value, str) for value in parameters.values())
    # psycopg prepares statements it runs often: PgBouncer must track them.
    assert int(parameters["max_prepared_statements"]) > 0


def test_web_goes_through_pgbouncer_and_workers_straight_to_the_primary(
    rendered: list[Obj],
) -> None:
    """LISTEN and the leader's session advisory lock do not survive transaction pooling."""
    [pooler] = of_kind(rendered, "Pooler")
    primary = "botter-db-cluster-rw"
    expected_host = {
        ("Deployment", "botter-app"): pooler["metadata"]["name"],
        ("Deployment", "botter-worker"): primary,
        ("Job", "botter-migrate"): primary,
    }
    for (kind, name), host in expected_host.items():
        workload = find(rendered, kind, name)
        [botter] = pod_spec(workload)["containers"]
        reference = env_of(botter)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        url = urlsplit(secret_value(rendered, reference["name"], reference["key"]))
        assert url.scheme == "postgresql"
        assert (url.hostname, url.port, url.path) == (host, 5432, "/botter"), name
        assert "sslmode=require" in url.query


def test_connection_budget_fits_max_connections(rendered: list[Obj]) -> None:
    """docs/scaling.md: the pooler's server side and the workers' direct connections."""
    max_connections = int(
        find(rendered, "Cluster", "botter-db-cluster")["spec"]["postgresql"]["parameters"][
            "max_connections"
        ]
    )
    pool_size = int(config_map(rendered)["DB_POOL_SIZE"])
    [pooler] = of_kind(rendered, "Pooler")
    pooler_servers = pooler["spec"]["instances"] * int(
        pooler["spec"]["pgbouncer"]["parameters"]["default_pool_size"]
    )
    max_workers = find(rendered, "ScaledObject", "botter-worker")["spec"]["maxReplicaCount"]
    workers = max_workers * (2 * pool_size + 2)
    migrate_and_cli = pool_size
    total = pooler_servers + workers + migrate_and_cli
    assert total <= max_connections - RESERVED_CONNECTIONS, (
        f"{pooler_servers} (pooler) + {workers} (workers) + {migrate_and_cli} (migrate) = "
        f"{total} > {max_connections} - {RESERVED_CONNECTIONS}"
    )
    # Every web instance's pool fits on the pooler's client side.
    max_web = find(rendered, "HorizontalPodAutoscaler", "botter-app-hpa")["spec"]["maxReplicas"]
    clients = int(pooler["spec"]["pgbouncer"]["parameters"]["max_client_conn"])
    assert max_web * pool_size <= clients


def test_redis_needs_no_persistence(rendered: list[Obj]) -> None:
    redis = find(rendered, "Deployment", "botter-redis")
    [server] = pod_spec(redis)["containers"]
    assert server["image"].startswith("redis:7")
    args = server["args"]
    assert args[args.index("--save") + 1] == ""
    assert args[args.index("--appendonly") + 1] == "no"
    service = find(rendered, "Service", "botter-redis")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(redis))
    url = urlsplit(config_map(rendered)["REDIS_URL"])
    assert (url.hostname, url.port) == ("botter-redis", service["spec"]["ports"][0]["port"])


def test_migration_job_runs_migrate_once(rendered: list[Obj]) -> None:
    job = find(rendered, "Job", "botter-migrate")
    [migrate] = pod_spec(job)["containers"]
    assert migrate["args"] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1


# ---- settings and secrets -------------------------------------------------------------


def test_every_setting_given_is_one_botter_reads(rendered: list[Obj]) -> None:
    """botter ignores names it does not know, so a misspelt one would pass silently."""
    known = {name.upper() for name in Settings.model_fields}
    for workload in workloads(rendered):
        if pod_labels(workload).get("app.kubernetes.io/name") != "botter":
            continue
        for container_ in all_containers(workload):
            unknown = set(env_of(container_)) - known
            assert not unknown, f"{workload['metadata']['name']}: {unknown}"
    assert not set(config_map(rendered)) - known


def test_config_values_are_valid_and_the_placeholder_key_is_refused(rendered: list[Obj]) -> None:
    values: dict[str, Any] = {name.lower(): value for name, value in config_map(rendered).items()}
    values["database_url"] = secret_value(rendered, "botter-secrets", "DATABASE_URL")
    real_key = "k" * 48
    Settings(_env_file=None, botter_secret_keys=real_key, **values)  # type: ignore[call-arg]
    placeholder = secret_value(rendered, "botter-secrets", "BOTTER_SECRET_KEYS")
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(_env_file=None, botter_secret_keys=placeholder, **values)  # type: ignore[call-arg]


def test_secrets_are_placeholders_only(rendered: list[Obj]) -> None:
    secrets = of_kind(rendered, "Secret")
    assert {s["metadata"]["name"] for s in secrets} == {"botter-secrets", "botter-db-credentials"}
    for secret in secrets:
        assert "data" not in secret, "no encoded values: templates only"
        for key, value in secret["stringData"].items():
            if key == "username":
                continue
            assert "CHANGE-ME" in value, f"{secret['metadata']['name']}.{key} looks real"
    assert set(find(rendered, "Secret", "botter-secrets")["stringData"]) >= {
        "BOTTER_SECRET_KEYS",
        "DATABASE_URL",
    }


# ---- disruption budgets ---------------------------------------------------------------


def test_disruption_budgets_cover_web_workers_and_pooler(rendered: list[Obj]) -> None:
    [pooler] = of_kind(rendered, "Pooler")
    targets = {
        "web": pod_labels(find(rendered, "Deployment", "botter-app")),
        "worker": pod_labels(find(rendered, "Deployment", "botter-worker")),
        # CloudNativePG labels pooler pods with the pooler's name.
        "pooler": {"cnpg.io/poolerName": pooler["metadata"]["name"]},
    }
    covered = set()
    for budget in of_kind(rendered, "PodDisruptionBudget"):
        matched = [
            name for name, labels in targets.items() if selects(budget["spec"]["selector"], labels)
        ]
        assert len(matched) == 1, f"PDB {budget['metadata']['name']} selects {matched}"
        # maxUnavailable never blocks a drain of a single replica; minAvailable could.
        assert budget["spec"].get("maxUnavailable") == 1
        covered.update(matched)
    assert covered == set(targets)


# ---- network policies, evaluated ------------------------------------------------------


@dataclass
class Peer:
    """A pod (namespace and labels) or an address outside the cluster."""

    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    address: str | None = None


def labelled(namespace: str, labels: dict[str, str]) -> Peer:
    return Peer(namespace=namespace, labels=labels)


def outside(address: str) -> Peer:
    return Peer(address=address)


def peer_matches(rule_peer: Obj, policy_namespace: str, other: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if other.address is None:
            return False
        address = ipaddress.ip_address(other.address)
        block = rule_peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(c) for c in block.get("except", []))
    if other.address is not None:
        return False
    namespace_selector = rule_peer.get("namespaceSelector")
    if namespace_selector is None:
        in_namespace = other.namespace == policy_namespace
    else:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace or ""}
        in_namespace = selects(namespace_selector, namespace_labels)
    pod_selector = rule_peer.get("podSelector")
    return in_namespace and (pod_selector is None or selects(pod_selector, other.labels))


def port_matches(ports: list[Obj] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(
        entry.get("protocol", "TCP") == protocol and entry.get("port") in (None, port)
        for entry in ports
    )


def side_allows(
    policies: list[Obj], subject: Peer, other: Peer, port: int, protocol: str, direction: str
) -> bool:
    """Whether the policies of `subject`'s namespace let this connection through on its side."""
    policy_type, rules_key, peers_key = (
        ("Egress", "egress", "to") if direction == "egress" else ("Ingress", "ingress", "from")
    )
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and policy_type in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(
    policies: list[Obj], source: Peer, target: Peer, port: int, protocol: str = "TCP"
) -> bool:
    out_ok = source.address is not None or side_allows(
        policies, source, target, port, protocol, "egress"
    )
    in_ok = target.address is not None or side_allows(
        policies, target, source, port, protocol, "ingress"
    )
    return out_ok and in_ok


@pytest.fixture(scope="module")
def cast(rendered: list[Obj]) -> dict[str, Peer]:
    """The pods and addresses the policies are about, labelled as the manifests label them."""
    [pooler] = of_kind(rendered, "Pooler")
    return {
        "web": labelled(NAMESPACE, pod_labels(find(rendered, "Deployment", "botter-app"))),
        "worker": labelled(NAMESPACE, pod_labels(find(rendered, "Deployment", "botter-worker"))),
        "migrate": labelled(NAMESPACE, pod_labels(find(rendered, "Job", "botter-migrate"))),
        "redis": labelled(NAMESPACE, pod_labels(find(rendered, "Deployment", "botter-redis"))),
        "pooler": labelled(
            NAMESPACE,
            {"cnpg.io/poolerName": pooler["metadata"]["name"], "cnpg.io/podRole": "pooler"},
        ),
        "postgres": labelled(
            NAMESPACE,
            {"cnpg.io/cluster": "botter-db-cluster", "cnpg.io/podRole": "instance"},
        ),
        "ingress": labelled("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
        "prometheus": labelled("monitoring", {"app.kubernetes.io/name": "prometheus"}),
        "dns": labelled("kube-system", {"k8s-app": "kube-dns"}),
        "operator": labelled("cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}),
        "keda": labelled("keda", {"app": "keda-operator"}),
        "stranger": labelled("default", {"app": "something-else"}),
        "stranger-here": labelled(NAMESPACE, {"app": "something-else"}),
        "telegram": outside("149.154.167.220"),
        "telegram-v6": outside("2001:67c:4e8:f004::9"),
        "internet": outside("93.184.215.14"),
    }


# (source, target, port, protocol): what the design needs, and nothing near it.
ALLOWED: Final = [
    ("ingress", "web", 3000, "TCP"),
    ("prometheus", "web", 3000, "TCP"),
    ("prometheus", "worker", 3001, "TCP"),
    ("prometheus", "postgres", 9187, "TCP"),
    ("prometheus", "pooler", 9127, "TCP"),
    ("web", "pooler", 5432, "TCP"),
    ("web", "redis", 6379, "TCP"),
    ("web", "dns", 53, "UDP"),
    ("web", "telegram", 443, "TCP"),
    ("worker", "postgres", 5432, "TCP"),
    ("worker", "redis", 6379, "TCP"),
    ("worker", "dns", 53, "UDP"),
    ("worker", "dns", 53, "TCP"),
    ("worker", "telegram", 443, "TCP"),
    ("worker", "telegram-v6", 443, "TCP"),
    ("migrate", "postgres", 5432, "TCP"),
    ("migrate", "dns", 53, "UDP"),
    ("pooler", "postgres", 5432, "TCP"),
    ("postgres", "postgres", 5432, "TCP"),
    ("operator", "postgres", 8000, "TCP"),
    ("keda", "postgres", 5432, "TCP"),
]
DENIED: Final = [
    ("stranger", "web", 3000, "TCP"),
    ("stranger-here", "web", 3000, "TCP"),
    ("stranger", "postgres", 5432, "TCP"),
    ("stranger", "redis", 6379, "TCP"),
    ("ingress", "worker", 3001, "TCP"),
    ("ingress", "redis", 6379, "TCP"),
    ("ingress", "pooler", 5432, "TCP"),
    ("prometheus", "redis", 6379, "TCP"),
    ("web", "postgres", 5432, "TCP"),
    ("web", "internet", 443, "TCP"),
    ("web", "worker", 3001, "TCP"),
    ("worker", "pooler", 5432, "TCP"),
    ("worker", "internet", 443, "TCP"),
    ("worker", "telegram", 80, "TCP"),
    ("worker", "web", 3000, "TCP"),
    ("migrate", "redis", 6379, "TCP"),
    ("migrate", "telegram", 443, "TCP"),
    ("redis", "telegram", 443, "TCP"),
    ("redis", "postgres", 5432, "TCP"),
    ("pooler", "redis", 6379, "TCP"),
    ("postgres", "redis", 6379, "TCP"),
    ("postgres", "internet", 5432, "TCP"),
    # Pods no other policy names: the default deny alone keeps them shut.
    ("stranger", "migrate", 8080, "TCP"),
    ("stranger", "stranger-here", 8080, "TCP"),
    ("stranger-here", "internet", 443, "TCP"),
]


def test_namespace_denies_by_default(rendered: list[Obj]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies
    )


@pytest.mark.parametrize(("source", "target", "port", "protocol"), ALLOWED)
def test_network_policies_allow(
    rendered: list[Obj], cast: dict[str, Peer], source: str, target: str, port: int, protocol: str
) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    assert allowed(policies, cast[source], cast[target], port, protocol)


@pytest.mark.parametrize(("source", "target", "port", "protocol"), DENIED)
def test_network_policies_deny(
    rendered: list[Obj], cast: dict[str, Peer], source: str, target: str, port: int, protocol: str
) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    assert not allowed(policies, cast[source], cast[target], port, protocol)
