"""The Dockerfile, .dockerignore, compose.yaml and the image's health check script.

No image is built here (the machines have no registry access): the Dockerfile is parsed
and held to what the image must be (multi-stage, the pinned lock installed in a venv,
non-root, a health check on /health, port 3000, `botter` as entrypoint with `serve` as the
default command), and everything it copies must exist and survive .dockerignore. The
health check script is run for real against a stub server. compose.yaml is interpolated
as Compose does and checked for its services, their start order, the names nginx's
upstream needs, the settings botter reads and the files it mounts; `docker compose config`
runs too when the Compose plugin is installed.
"""

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import pytest

from botter.config import Settings

try:
    import yaml
except ImportError:  # reported by the `compose` fixture, naming the package
    yaml = None  # type: ignore[assignment]

REPO: Final = Path(__file__).resolve().parents[2]
DOCKERFILE: Final = REPO / "Dockerfile"
DOCKERIGNORE: Final = REPO / ".dockerignore"
COMPOSE: Final = REPO / "compose.yaml"
NGINX_CONF: Final = REPO / "deploy" / "nginx" / "botter.conf"
HEALTHCHECK_SCRIPT: Final = REPO / "deploy" / "docker" / "healthcheck.py"
IMAGE: Final = "botter:0.1.0"
APP_SERVICES: Final = ("botter-app-1", "botter-app-2", "botter-app-3")
WORKER_SERVICES: Final = ("botter-worker",)
BOTTER_SERVICES: Final = (*APP_SERVICES, *WORKER_SERVICES, "migrate")
PROMETHEUS_CONFIG: Final = REPO / "deploy" / "prometheus" / "prometheus.yml"
# Images with no shell or HTTP client to run a health check with.
NO_HEALTHCHECK: Final = {"migrate", "nginx-exporter"}
# What a .env next to compose.yaml provides; the rest have defaults.
COMPOSE_ENV: Final = {
    "BOTTER_SECRET_KEYS": "compose-test-secret-key-0123456789-abcdefghijkl",
    "POSTGRES_PASSWORD": "compose-test-password",
}

Obj = dict[str, Any]


# ---- the Dockerfile -------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.image} has no {keyword}"
        return found[-1]


def logical_lines(text: str) -> Iterator[str]:
    """Instructions with their continuation lines joined and comment lines dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"


def parse_dockerfile(text: str) -> list[Stage]:
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            arguments[name] = default
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, rest))
    return stages


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"{arguments} is not the exec (JSON) form"
    return [str(item) for item in value]


def env_pairs(arguments: list[str]) -> dict[str, str]:
    pairs = {}
    for argument in arguments:
        for word in shlex.split(argument):
            key, _, value = word.partition("=")
            pairs[key] = value
    return pairs


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_image_is_multi_stage_on_a_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert builder.name == "builder"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", runtime.image), runtime.image
    # The venv is copied between stages: same Python at the same path on both sides.
    assert builder.image == runtime.image


def test_builder_installs_the_lock_into_a_venv(stages: list[Stage]) -> None:
    builder = stages[0]
    runs = " ".join(builder.all("RUN"))
    assert "python -m venv /opt/venv" in runs
    assert "/opt/venv/bin" in env_pairs(builder.all("ENV"))["PATH"]
    assert any(arguments.split()[0] == "requirements.lock" for arguments in builder.all("COPY"))
    assert "pip install -r requirements.lock" in runs
    # botter itself on top, without re-resolving the pinned dependencies.
    assert "pip install --no-deps ." in runs


def test_runtime_gets_the_venv_and_nothing_from_the_build_tools(runtime: Stage) -> None:
    copies = runtime.all("COPY")
    assert "--from=builder /opt/venv /opt/venv" in copies
    assert not any("requirements.lock" in c or " src" in c for c in copies)
    assert "/opt/venv/bin" in env_pairs(runtime.all("ENV"))["PATH"].split(":")[0]


def test_runtime_environment(runtime: Stage) -> None:
    environment = env_pairs(runtime.all("ENV"))
    assert environment["PYTHONDONTWRITEBYTECODE"] == "1"
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert environment["PORT"] == "3000"


def test_runs_as_a_numeric_non_root_user_it_creates(runtime: Stage) -> None:
    user = runtime.last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert int(uid) != 0
    assert not gid or int(gid) != 0
    runs = " ".join(runtime.all("RUN"))
    assert f"--uid {uid}" in runs
    # USER comes after every RUN that needs root.
    keywords = [i.keyword for i in runtime.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_port_entrypoint_and_default_command(runtime: Stage) -> None:
    assert runtime.all("EXPOSE") == ["3000"]
    assert exec_form(runtime.last("ENTRYPOINT")) == ["botter"]
    assert exec_form(runtime.last("CMD")) == ["serve"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["botter"] == "botter.cli:app"


def test_healthcheck_runs_the_shipped_script(runtime: Stage) -> None:
    options, _, command = runtime.last("HEALTHCHECK").partition(" CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    arguments = exec_form(command)
    assert arguments[0] == "python"
    destination = arguments[1]
    copied = [c.split() for c in runtime.all("COPY") if not c.startswith("--")]
    assert ["deploy/docker/healthcheck.py", destination] in copied


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(excluded?, regex) per line of .dockerignore, in order: the last match decides."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!").strip("/")
        regex = ""
        index = 0
        while index < len(line):
            if line.startswith("**/", index):
                regex += "(?:.*/)?"
                index += 3
            elif line.startswith("**", index):
                regex += ".*"
                index += 2
            elif line[index] == "*":
                regex += "[^/]*"
                index += 1
            elif line[index] == "?":
                regex += "[^/]"
                index += 1
            elif line[index] == "[":
                end = line.index("]", index)
                regex += line[index : end + 1]
                index = end + 1
            else:
                regex += re.escape(line[index])
                index += 1
        patterns.append((not negated, re.compile(regex)))
    return patterns


def ignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for excluded, pattern in dockerignore_patterns():
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            verdict = excluded
    return verdict


def test_everything_copied_exists_and_is_in_the_build_context(stages: list[Stage]) -> None:
    for stage in stages:
        for arguments in stage.all("COPY"):
            words = [w for w in arguments.split() if not w.startswith("--")]
            if arguments.startswith("--from="):
                continue
            for source in words[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such file"
                assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
    for path in ("src/botter/cli.py", "src/botter/db/migrations/env.py", "README.md"):
        assert not ignored(path), path


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    for path in (
        ".env",
        ".env.production",
        "deploy/.env",
        ".botter/secret.key",
        ".venv/bin/python",
        ".git/config",
        "tls/botter.key",
        "src/botter/__pycache__/cli.cpython-311.pyc",
        "tests/test_cli.py",
        "deploy/nginx/botter.conf",
    ):
        assert ignored(path), f"{path} would be sent to the Docker daemon"


# ---- the health check script ----------------------------------------------------------


class StubHandler(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[int, type[StubHandler]]]:
    handler = type("Handler", (StubHandler,), {"status": 200, "paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def run_healthcheck(mode: str, **environment: str) -> int:
    result = subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT), mode],
        env={"PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode


def test_healthcheck_asks_health_on_port(stub: tuple[int, type[StubHandler]]) -> None:
    port, handler = stub
    assert run_healthcheck("serve", PORT=str(port)) == 0
    assert handler.paths == ["/health"]
    handler.status = 503
    assert run_healthcheck("serve", PORT=str(port)) == 1


def test_healthcheck_asks_the_worker_metrics_port(stub: tuple[int, type[StubHandler]]) -> None:
    port, handler = stub
    assert run_healthcheck("worker", WORKER_METRICS_PORT=str(port), PORT="1") == 0
    assert handler.paths == ["/metrics"]


def test_healthcheck_fails_when_nothing_answers_and_passes_migrate() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), StubHandler) as closed:
        port = closed.server_address[1]
    assert run_healthcheck("serve", PORT=str(port)) == 1
    assert run_healthcheck("migrate") == 0
    assert run_healthcheck("nonsense") == 1


# ---- compose.yaml ---------------------------------------------------------------------


VARIABLE: Final = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariableError(Exception):
    pass


def interpolate(text: str, environment: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group("name", "op", "arg")
        value = environment.get(name)
        empty = not value
        if operator in (":?", "?") and (empty if operator == ":?" else value is None):
            raise MissingVariableError(f"{name}: {argument}")
        if operator == ":-" and empty:
            return str(argument)
        if operator == "-" and value is None:
            return str(argument)
        return value or ""

    return VARIABLE.sub(substitute, text.replace("$$", "\0")).replace("\0", "$")


def load_compose(environment: dict[str, str]) -> Obj:
    if yaml is None:
        pytest.fail(
            "PyYAML (import yaml) is not installed: pin PyYAML==6.0.4 in requirements.lock",
            pytrace=False,
        )
    document: Obj = yaml.safe_load(interpolate(COMPOSE.read_text(), environment))
    return document


@pytest.fixture(scope="module")
def compose() -> Obj:
    return load_compose(COMPOSE_ENV)


@pytest.fixture(scope="module")
def services(compose: Obj) -> dict[str, Obj]:
    found: dict[str, Obj] = compose["services"]
    return found


def environment_of(service: Obj) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        return {str(k): str(v) for k, v in environment.items()}
    return dict(str(entry).partition("=")[::2] for entry in environment)


def bind_mounts(service: Obj) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def test_compose_has_every_service(services: dict[str, Obj]) -> None:
    assert set(services) == {
        *BOTTER_SERVICES,
        "nginx",
        "postgres",
        "redis",
        "prometheus",
        "nginx-exporter",
    }


def test_botter_services_share_one_image_and_differ_by_command(services: dict[str, Obj]) -> None:
    for name in BOTTER_SERVICES:
        assert services[name]["image"] == IMAGE, name
        assert services[name]["build"]["context"] == "."
    for name in APP_SERVICES:
        assert services[name]["command"] == ["serve"]
    for name in WORKER_SERVICES:
        assert services[name]["command"] == ["worker"]
    assert services["migrate"]["command"] == ["migrate"]


def test_database_and_redis_versions(services: dict[str, Obj]) -> None:
    assert re.fullmatch(r"postgres:16([.-].*)?", services["postgres"]["image"])
    assert re.fullmatch(r"redis:7([.-].*)?", services["redis"]["image"])


def test_migrate_runs_once_before_everything_that_uses_the_schema(
    services: dict[str, Obj],
) -> None:
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in (*APP_SERVICES, *WORKER_SERVICES):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name


def test_long_running_services_have_health_checks(services: dict[str, Obj]) -> None:
    for name, service in services.items():
        if name in NO_HEALTHCHECK:
            continue
        check = service["healthcheck"]
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    for name in APP_SERVICES:
        assert services[name]["healthcheck"]["test"][-1] == "serve"
    for name in WORKER_SERVICES:
        assert services[name]["healthcheck"]["test"][-1] == "worker"


def upstream_servers() -> list[tuple[str, int]]:
    text = "\n".join(
        line for line in NGINX_CONF.read_text().splitlines() if not line.strip().startswith("#")
    )
    block = re.search(r"upstream\s+\w+\s*\{(.*?)\}", text, re.S)
    assert block, "no upstream block in deploy/nginx/botter.conf"
    return [(h, int(p)) for h, p in re.findall(r"^\s*server\s+([\w.-]+):(\d+)", block[1], re.M)]


def test_nginx_upstream_names_resolve_to_app_services(services: dict[str, Obj]) -> None:
    """On a compose network, a service's name (and its hostname) resolves to it."""
    servers = upstream_servers()
    assert len(servers) == len(APP_SERVICES)
    nginx_depends_on = services["nginx"]["depends_on"]
    for host, port in servers:
        assert host in services, f"nginx's upstream {host} is no compose service"
        assert services[host]["command"] == ["serve"]
        assert environment_of(services[host])["PORT"] == str(port)
        assert nginx_depends_on[host]["condition"] == "service_healthy"
        assert set(services[host]["networks"]) & set(services["nginx"]["networks"])


def test_nginx_mounts_its_config_and_certificates(services: dict[str, Obj]) -> None:
    mounts = {target: source for source, target in bind_mounts(services["nginx"])}
    assert mounts["/etc/nginx/conf.d/botter.conf"] == "./deploy/nginx/botter.conf"
    assert "/etc/nginx/tls" in mounts
    certificates = re.findall(
        r"^\s*ssl_certificate(?:_key)?\s+(\S+);", NGINX_CONF.read_text(), re.M
    )
    assert certificates
    for path in certificates:
        assert path.startswith("/etc/nginx/tls/"), path
    assert {"80:80", "443:443"} <= set(services["nginx"]["ports"])


def test_mounted_deploy_files_exist(services: dict[str, Obj]) -> None:
    """Everything compose mounts from the repository; the TLS directory is the operator's."""
    checked = 0
    for name, service in services.items():
        for source, target in bind_mounts(service):
            if target == "/etc/nginx/tls":
                continue
            assert source.startswith("./deploy/"), f"{name} mounts {source}"
            assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
            checked += 1
    assert checked >= 3
    prometheus = {t: s for s, t in bind_mounts(services["prometheus"])}
    config = REPO / prometheus["/etc/prometheus"] / "prometheus.yml"
    assert config.is_file(), f"{config.relative_to(REPO)} is mounted into Prometheus"


def test_botter_settings_are_known_valid_and_point_at_the_services(
    services: dict[str, Obj], compose: Obj
) -> None:
    known = {name.upper() for name in Settings.model_fields}
    subnet = ipaddress.ip_network(compose["networks"]["botter"]["ipam"]["config"][0]["subnet"])
    for name in BOTTER_SERVICES:
        environment = environment_of(services[name])
        assert set(environment) <= known, set(environment) - known
        database = urlsplit(environment["DATABASE_URL"])
        assert database.hostname in services
        assert database.password == COMPOSE_ENV["POSTGRES_PASSWORD"]
        assert urlsplit(environment["REDIS_URL"]).hostname in services
        assert environment["BOTTER_SECRET_KEYS"] == COMPOSE_ENV["BOTTER_SECRET_KEYS"]
        assert "PUBLIC_URL" in environment
        trusted = [ipaddress.ip_network(p) for p in environment["TRUSTED_PROXIES"].split(",")]
        assert any(subnet.subnet_of(network) for network in trusted), "nginx's address"
        values: dict[str, Any] = {key.lower(): value for key, value in environment.items()}
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    postgres = environment_of(services["postgres"])
    assert postgres["POSTGRES_PASSWORD"] == COMPOSE_ENV["POSTGRES_PASSWORD"]


def test_prometheus_targets_are_compose_services_on_their_ports(
    services: dict[str, Obj],
) -> None:
    """Every static target of deploy/prometheus/prometheus.yml resolves on the compose
    network and is the port that service listens on."""
    if yaml is None:
        pytest.fail("PyYAML (import yaml) is not installed: pin PyYAML==6.0.4", pytrace=False)
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    ports_by_job = {
        "botter-app": lambda service: environment_of(service)["PORT"],
        "botter-worker": lambda service: environment_of(service)["WORKER_METRICS_PORT"],
        "nginx": lambda service: "9113",  # nginx-prometheus-exporter's port
    }
    seen = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                assert host in services, f"{job['job_name']}: {host} is no compose service"
                assert ports_by_job[job["job_name"]](services[host]) == port, target
                seen.add(host)
    assert seen >= {*APP_SERVICES, *WORKER_SERVICES}
    exporter = " ".join(services["nginx-exporter"]["command"])
    assert "http://nginx:8080/stub_status" in exporter
    status = (REPO / "deploy" / "docker" / "nginx-status.conf").read_text()
    assert re.search(r"^\s*listen 8080;", status, re.M)
    assert "stub_status;" in status


@pytest.mark.parametrize("missing", sorted(COMPOSE_ENV))
def test_secrets_are_required_variables(missing: str) -> None:
    environment = {k: v for k, v in COMPOSE_ENV.items() if k != missing}
    with pytest.raises(MissingVariableError, match=missing):
        load_compose(environment)


def test_botter_containers_are_locked_down(services: dict[str, Obj]) -> None:
    for name in BOTTER_SERVICES:
        service = services[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "user" not in service, "the image's non-root user"


def compose_command() -> list[str]:
    """Compose v2 (the docker plugin) when present, else Debian's docker-compose, which
    `make test` installs; both validate and render the file without a Docker daemon."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy is not None, (
        "neither `docker compose` nor `docker-compose` is installed: "
        "apt-get install docker-compose (make test does this as root)"
    )
    return [legacy]


def test_docker_compose_config_accepts_the_file() -> None:
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config", "--quiet"],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **COMPOSE_ENV},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
