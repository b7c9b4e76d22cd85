"""deploy/kubernetes/ is valid Kubernetes and agrees with the code it deploys.

Every manifest is validated (strict: no unknown field) against the Kubernetes schemas that
`kubernetes-validate` bundles, offline; each container's command is a real `payment-window`
command running exactly the loops `loops.loops_for` gives it, and holds exactly the secrets
`runner.require_for` asks of it (the same split as the ECS tasks of payments.tf).
"""

from __future__ import annotations

import copy
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml
from test_terraform import _secret_names as terraform_secrets
from test_terraform import _source as terraform_source

from payment_window.api.routes.health import router as health
from payment_window.cli import app as cli
from payment_window.config import Environment, Settings
from payment_window.loops import Loop, loops_for
from payment_window.runner import StartupRefused, require_for

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
SETTINGS_NAMES = {f"PW_{name.upper()}" for name in Settings.model_fields}
# The oldest Kubernetes the manifests are for (lifecycle `sleep` is on by default from 1.30),
# and the newest whose schemas the package bundles.
VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
# workload → (the `payment-window` command, the process it is to `loops_for`/`require_for`)
WORKLOADS = {
    "payment-window-api": ("serve", "serve"),
    "payment-window-worker": ("worker", "worker"),
    "payment-window-relay": ("relay", "relay"),
    "payment-window-expire-due": ("expire-due", "expire-due"),
    "payment-window-migrate": ("migrate", "migrate"),
}
TERRAFORM_SECRETS = {
    "serve": "api",
    "worker": "worker",
    "relay": "relay",
    "expire-due": "expire_due",
}
# What the Kubernetes relay holds beyond the ECS one: the webhook signing secret.
ONLY_ON_KUBERNETES = {"relay": {"PW_WEBHOOK_SECRET"}}


@cache
def documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return tuple(found)


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return loaded


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def pod_specs() -> dict[str, dict[str, Any]]:
    """Each workload's pod spec, by workload name."""
    specs = {}
    for _, doc in documents():
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "Job"):
            specs[doc["metadata"]["name"]] = spec["template"]["spec"]
        elif doc["kind"] == "CronJob":
            specs[doc["metadata"]["name"]] = spec["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def container(workload: str) -> dict[str, Any]:
    [only] = pod_specs()[workload]["containers"]
    return dict(only)


def secret_names(workload: str) -> set[str]:
    env = container(workload).get("env", [])
    return {item["name"] for item in env if "secretKeyRef" in item.get("valueFrom", {})}


def plain_environment(workload: str) -> dict[str, str]:
    """The ConfigMap's settings, then the container's own literal values."""
    [configmap] = of_kind("ConfigMap").values()
    values = {key: str(value) for key, value in configmap["data"].items()}
    for item in container(workload).get("env", []):
        if "value" in item:
            values[item["name"]] = str(item["value"])
    return values


def settings_for(
    workload: str, monkeypatch: pytest.MonkeyPatch, secrets: set[str] | None = None
) -> Settings:
    """The settings the container starts with: the environment and these secrets' values."""
    for name in list(os.environ):
        if name.startswith("PW_"):
            monkeypatch.delenv(name)
    for name, value in plain_environment(workload).items():
        monkeypatch.setenv(name, value)
    for name in secret_names(workload) if secrets is None else secrets:
        if name == "PW_DATABASE_URL":
            value = "postgresql://pw:pw@db:5432/pw"
        elif name == "PW_WEBHOOK_SECRET":
            value = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        else:
            value = "secret-value"
        monkeypatch.setenv(name, value)
    return Settings()


# --- schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    kinds = set()
    for name, document in documents():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {document['kind']}: {error.message} at {list(error.path)}")
        kinds.add(document["kind"])
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "CronJob",
        "Job",
        "ConfigMap",
    } <= kinds


def test_the_validation_is_strict_and_offline_enough_to_catch_a_typo() -> None:
    _, deployment = next(d for d in documents() if d[1]["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_kustomization_lists_every_manifest_and_only_those() -> None:
    listed = kustomization()["resources"]
    files = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(files)
    assert {image["name"] for image in kustomization()["images"]} == {"payment-window"}
    for workload in WORKLOADS:
        assert container(workload)["image"] == "payment-window"


# --- commands, loops, secrets -----------------------------------------------------------------


def test_each_workload_runs_a_real_command_with_the_loops_it_is_meant_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert set(pod_specs()) == set(WORKLOADS)
    commands = {command.name for command in typer.main.get_command(cli).commands.values()}
    for workload, (command, _process) in WORKLOADS.items():
        args = container(workload)["args"]
        assert "command" not in container(workload), "keep the image's entrypoint"
        assert args[0] == command and command in commands, workload
    expected = {
        "payment-window-api": frozenset(),  # serves only: no claims, no publishing
        "payment-window-worker": frozenset({Loop.WORKER}),
        "payment-window-relay": frozenset({Loop.RELAY}),
    }
    for workload, loops in expected.items():
        process = WORKLOADS[workload][1]
        assert loops_for(process, settings_for(workload, monkeypatch)) == loops, workload


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_each_container_starts_with_its_secrets_and_holds_none_it_does_not_need(
    workload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = WORKLOADS[workload][1]
    given = secret_names(workload)
    settings = settings_for(workload, monkeypatch)
    assert settings.env is Environment.PRODUCTION
    assert "PW_DATABASE_URL" in given
    require_for(process, settings)
    for name in given & {"PW_STRIPE_API_KEY", "PW_JWT_SECRET"}:
        with pytest.raises(StartupRefused, match=name):
            require_for(process, settings_for(workload, monkeypatch, given - {name}))
    if process in TERRAFORM_SECRETS:
        # The same split as the ECS tasks (payments.tf), plus what only webhooks need.
        ecs = terraform_secrets(TERRAFORM_SECRETS[process])
        assert given == ecs | ONLY_ON_KUBERNETES.get(process, set()), workload
    else:
        assert given == {"PW_DATABASE_URL"}


def test_the_relay_signs_webhooks_and_nothing_else_holds_the_signing_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holders = {w for w in WORKLOADS if "PW_WEBHOOK_SECRET" in secret_names(w)}
    assert holders == {"payment-window-relay"}
    assert not {"PW_STRIPE_API_KEY", "PW_JWT_SECRET", "PW_REDIS_URL"} & secret_names(
        "payment-window-relay"
    )
    # With endpoints configured, the relay needs the secret, the others only the endpoints.
    monkeypatch.setenv("PW_WEBHOOK_ENDPOINTS", "https://hooks.example.com/pw")
    for workload, (_, process) in WORKLOADS.items():
        given = secret_names(workload)
        for name in list(os.environ):
            if name.startswith("PW_"):
                monkeypatch.delenv(name)
        settings = settings_for(workload, monkeypatch).model_copy(
            update={"webhook_endpoints": ["https://hooks.example.com/pw"]}
        )
        require_for(process, settings)
        if "PW_WEBHOOK_SECRET" in given:
            unsigned = settings.model_copy(update={"webhook_secret": None})
            with pytest.raises(StartupRefused, match="PW_WEBHOOK_SECRET"):
                require_for(process, unsigned)


def test_every_pw_name_is_a_real_setting() -> None:
    for workload in WORKLOADS:
        names = set(plain_environment(workload)) | {
            item["name"] for item in container(workload).get("env", [])
        }
        unknown = {name for name in names if name.startswith("PW_")} - SETTINGS_NAMES
        assert not unknown, f"{workload}: {sorted(unknown)}"


# --- pods: security, probes, shutdown, sizing -------------------------------------------------


def dockerfile_uid() -> int:
    match = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert match
    return int(match.group(1))


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_every_pod_runs_non_root_read_only_with_no_capabilities_and_no_api_token(
    workload: str,
) -> None:
    pod = pod_specs()[workload]
    uid = dockerfile_uid()
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for each in pod["containers"]:
        context = each["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context.get("runAsUser", uid) == uid
        assert each["resources"]["requests"]["cpu"] and each["resources"]["requests"]["memory"]
        assert each["resources"]["limits"]["memory"]
        assert "/tmp" in {mount["mountPath"] for mount in each.get("volumeMounts", [])}


def test_the_api_is_probed_on_its_health_routes_and_scaled_and_protected() -> None:
    api = container("payment-window-api")
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/healthz", "/readyz"} <= {getattr(route, "path", None) for route in health.routes}
    port = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert port == {"http": int(api["args"][api["args"].index("--port") + 1])}

    labels = of_kind("Deployment")["payment-window-api"]["spec"]["template"]["metadata"]["labels"]
    service = of_kind("Service")["payment-window-api"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"
    pdb = of_kind("PodDisruptionBudget")["payment-window-api"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    hpa = of_kind("HorizontalPodAutoscaler")["payment-window-api"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "payment-window-api",
    }
    assert pdb["minAvailable"] < hpa["minReplicas"]
    # Only the API's pods are selected: other workloads carry another component label.
    for name, deployment in of_kind("Deployment").items():
        if name != "payment-window-api":
            other = deployment["spec"]["template"]["metadata"]["labels"]
            assert not service["selector"].items() <= other.items()


def test_grace_periods_match_the_processes_shutdown() -> None:
    pods = pod_specs()
    # The worker finishes its groups in flight: the ECS tasks' stopTimeout.
    stop_timeout = int(re.search(r"stopTimeout\s*=\s*(\d+)", terraform_source()).group(1))  # type: ignore[union-attr]
    assert pods["payment-window-worker"]["terminationGracePeriodSeconds"] == stop_timeout
    assert pods["payment-window-expire-due"]["terminationGracePeriodSeconds"] == stop_timeout
    # The relay's slowest delivery is the webhook timeout (10 s), with room for the pass's writes.
    assert pods["payment-window-relay"]["terminationGracePeriodSeconds"] >= 2 * 10
    api = pods["payment-window-api"]
    pre_stop = api["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert api["terminationGracePeriodSeconds"] >= pre_stop + 20


def test_the_backstop_pass_runs_every_minute_one_at_a_time() -> None:
    cron = of_kind("CronJob")["payment-window-expire-due"]["spec"]
    assert cron["schedule"] == "* * * * *"
    assert 'schedule_expression          = "rate(1 minute)"' in terraform_source()
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
