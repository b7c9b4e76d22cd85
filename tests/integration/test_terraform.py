"""The production Terraform agrees with the code it deploys, and checkov finds nothing in it.

Parsed statically with python-hcl2 (no `terraform init`): the schedule, the Lambda handler, the
commands and every `PW_` name are checked against the real package.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import boto3
import hcl2
import pytest
import typer
from moto import mock_aws

from payment_window.adapters import index_factory
from payment_window.cli import app
from payment_window.config import Environment, Settings
from payment_window.loops import Loop, loops_for
from payment_window.runner import StartupRefused, require_for

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infrastructure" / "terraform"
CHECKOV = ROOT / "scripts" / "checkov.sh"
LAMBDA_DIR = ROOT / "infrastructure" / "lambda"
SETTINGS_NAMES = {f"PW_{name.upper()}" for name in Settings.model_fields}
SERVICES = ("api", "worker", "relay")
MIN_REASON_WORDS = 5


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [_unquote(item) for item in value]
    if isinstance(value, dict):
        return {_unquote(key): _unquote(item) for key, item in value.items()}
    return value


@cache
def _parsed() -> dict[str, Any]:
    merged: dict[str, Any] = {"resource": {}, "variable": {}, "locals": {}}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            document = _unquote(hcl2.load(handle))
        for block in document.get("resource", []):
            for kind, named in block.items():
                merged["resource"].setdefault(kind, {}).update(named)
        for block in document.get("variable", []):
            merged["variable"].update(block)
        for block in document.get("locals", []):
            merged["locals"].update(block)
    return merged


def _resource(kind: str, name: str) -> dict[str, Any]:
    resources = _parsed()["resource"]
    assert name in resources.get(kind, {}), f"no {kind}.{name} in {TERRAFORM}"
    return dict(resources[kind][name])


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body.get(name)
    assert blocks, f"missing block {name!r}"
    return dict(blocks[0] if isinstance(blocks, list) else blocks)


def _source() -> str:
    return "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))


def _schedule() -> dict[str, Any]:
    return _resource("aws_scheduler_schedule", "expire_due")


def test_the_expiry_schedule_runs_every_minute_without_a_flexible_window() -> None:
    schedule = _schedule()
    assert schedule["schedule_expression"] == "rate(1 minute)"
    assert _block(schedule, "flexible_time_window")["mode"] == "OFF"
    assert schedule["state"] == "ENABLED"


def test_the_expiry_schedule_retries_and_dead_letters_to_an_encrypted_queue() -> None:
    target = _block(_schedule(), "target")
    retry = _block(target, "retry_policy")
    assert retry["maximum_retry_attempts"] >= 1
    assert 60 <= retry["maximum_event_age_in_seconds"] <= 86400
    queue_reference = _block(target, "dead_letter_config")["arn"]
    match = re.fullmatch(r"\$\{aws_sqs_queue\.(\w+)\.arn\}", queue_reference)
    assert match, queue_reference
    assert _resource("aws_sqs_queue", match.group(1))["kms_master_key_id"]
    assert target["arn"] == "${aws_lambda_function.expire_due.arn}"


def test_the_lambda_handler_is_the_real_callable() -> None:
    function = _resource("aws_lambda_function", "expire_due")
    module_path, _, attribute = function["handler"].rpartition(".")
    assert module_path == "payment_window.lambda_handler"
    module = importlib.import_module(module_path)
    handler = getattr(module, attribute)
    assert callable(handler)
    assert list(inspect.signature(handler).parameters) == ["event", "context"]
    assert function["runtime"] == "python3.11"
    assert _block(function, "vpc_config")["subnet_ids"] == "${var.private_subnet_ids}"


def test_the_lambda_secrets_wrapper_is_packaged_beside_the_terraform() -> None:
    variables = _block(_resource("aws_lambda_function", "expire_due"), "environment")["variables"]
    wrapper = re.search(r'AWS_LAMBDA_EXEC_WRAPPER\s*=\s*"/var/task/([\w.]+)"', variables)
    assert wrapper, variables
    path = LAMBDA_DIR / wrapper.group(1)
    assert path.is_file() and os.access(path, os.X_OK)
    assert path.read_text().startswith("#!/usr/bin/env python3\n")


def test_the_lambda_secrets_wrapper_reads_each_secret_into_its_variable() -> None:
    spec = importlib.util.spec_from_file_location(
        "secrets_to_env", LAMBDA_DIR / "secrets_to_env.py"
    )
    assert spec and spec.loader
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="pw/redis-url", SecretString="rediss://:t@h:6379/0")["ARN"]
        assert wrapper.secret_environment({"PW_REDIS_URL": arn}, client) == {
            "PW_REDIS_URL": "rediss://:t@h:6379/0"
        }


def test_every_pw_name_in_the_terraform_is_a_real_setting() -> None:
    used = set(re.findall(r"\bPW_[A-Z0-9_]+\b", _source()))
    assert used, "the terraform sets no PW_ variables"
    assert used - SETTINGS_NAMES == set()


def _common_environment() -> dict[str, str]:
    """`local.common_environment` with each value resolved to a literal or a variable default."""
    expression = _parsed()["locals"]["common_environment"]
    variables = _parsed()["variable"]
    resolved: dict[str, str] = {}
    for name, listed in re.findall(
        r'\b(PW_[A-Z0-9_]+)\s*=\s*join\(",",\s*var\.(\w+)\)', expression
    ):
        resolved[name] = ",".join(variables[listed].get("default") or [])
        expression = expression.replace(f'join(",", var.{listed})', '""')
    for name, value in re.findall(r"\b(PW_[A-Z0-9_]+)\s*=\s*([^,}]+)", expression):
        if name in resolved:
            continue
        value = value.strip()
        reference = re.fullmatch(r"(?:tostring\()?var\.(\w+)\)?", value)
        if value.startswith('"'):
            resolved[name] = value.strip('"')
        elif reference:
            default = variables[reference.group(1)].get("default")
            if default is None:
                continue  # `var.x == null ? {} : {...}`: left out by default
            resolved[name] = str(default).lower() if isinstance(default, bool) else str(default)
        else:
            resolved[name] = f"https://example.invalid/{name.lower()}"
    return resolved


def _secret_names(process: str) -> set[str]:
    locals_ = _parsed()["locals"]
    names = set(locals_["store_secrets"]) | set(
        re.findall(r"\b(PW_[A-Z0-9_]+)\s*=", locals_["secrets"][process])
    )
    return names


def test_the_topic_variables_name_the_three_topics_and_match_the_settings() -> None:
    expression = _parsed()["locals"]["common_environment"]
    topics = dict(re.findall(r"\b(PW_\w+)\s*=\s*aws_sns_topic\.(\w+)\.arn", expression))
    assert topics == {
        "PW_SNS_MAKER_TOPIC_ARN": "maker_notifications",
        "PW_SNS_BUYER_TOPIC_ARN": "buyer_notifications",
        "PW_AUCTION_EVENTS_TOPIC_ARN": "auction_events",
    }
    assert set(topics) <= SETTINGS_NAMES
    for topic in topics.values():
        assert _resource("aws_sns_topic", topic)["kms_master_key_id"]
    assert _parsed()["locals"]["topic_arns"] == [
        f"${{aws_sns_topic.{topic}.arn}}" for topic in topics.values()
    ]


def test_only_the_relay_may_publish_and_only_to_the_three_topics() -> None:
    source = _source()
    assert source.count('"sns:Publish"') == 1
    relay_policy = re.search(r'data "aws_iam_policy_document" "relay" \{.*?\n\}', source, re.S)
    assert relay_policy and '"sns:Publish"' in relay_policy.group(0)
    assert "resources = local.topic_arns" in relay_policy.group(0)
    assert _resource("aws_iam_role_policy", "relay")["role"] == '${aws_iam_role.task["relay"].id}'


def test_the_task_definitions_carry_the_environment_and_each_process_its_secrets() -> None:
    definitions = _resource("aws_ecs_task_definition", "service")["container_definitions"]
    assert "local.common_environment" in definitions
    assert "local.secrets[each.key]" in definitions
    environment = _common_environment()
    assert environment["PW_ENV"] == "production"
    assert "PW_STRIPE_EXPIRE_RPS" in environment
    for process in (*SERVICES, "expire_due"):
        assert "PW_DATABASE_URL" in _secret_names(process)
    for process in ("api", "worker", "expire_due"):
        assert "PW_REDIS_URL" in _secret_names(process)
    assert "PW_STRIPE_WEBHOOK_SECRET" in _secret_names("api")


# Secrets whose form is checked at start-up get a value of the right form.
FAKE_SECRETS = {
    "PW_DATABASE_URL": "postgresql://pw:pw@db:5432/pw",
    "PW_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def _production_settings(
    process: str, monkeypatch: pytest.MonkeyPatch, secrets: set[str]
) -> Settings:
    """The settings a task starts with: the common environment, its own, these secrets."""
    for name in list(os.environ):
        if name.startswith("PW_"):
            monkeypatch.delenv(name)
    own = _service_processes()[process][1] if process in SERVICES else {}
    for name, value in {**_common_environment(), **own}.items():
        monkeypatch.setenv(name, value)
    for name in secrets:
        monkeypatch.setenv(name, FAKE_SECRETS.get(name, "secret-value"))
    return Settings()


COMMANDS = {"api": "serve", "worker": "worker", "relay": "relay", "expire_due": "expire-due"}


@pytest.mark.parametrize("process", [*SERVICES, "expire_due"])
def test_each_process_starts_with_its_secrets_and_needs_every_stripe_and_token_secret_it_holds(
    process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _secret_names(process)
    settings = _production_settings(process, monkeypatch, given)
    assert settings.env is Environment.PRODUCTION
    assert settings.sns_maker_topic_arn and settings.auction_events_topic_arn
    require_for(COMMANDS[process], settings)  # starts with what its task is given
    # ... and is given no Stripe key or token secret it does not ask for.
    for name in given & {"PW_STRIPE_API_KEY", "PW_JWT_SECRET"}:
        with pytest.raises(StartupRefused, match=name):
            fewer = _production_settings(process, monkeypatch, given - {name})
            require_for(COMMANDS[process], fewer)


def test_the_relay_cannot_read_the_stripe_key_or_the_token_secret() -> None:
    assert not {"PW_STRIPE_API_KEY", "PW_JWT_SECRET"} & _secret_names("relay")


def test_only_the_relay_holds_the_webhook_secret_and_it_starts_with_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "PW_WEBHOOK_SECRET" in _secret_names("relay")
    for process in ("api", "worker", "expire_due"):
        assert "PW_WEBHOOK_SECRET" not in _secret_names(process)
    assert _common_environment()["PW_WEBHOOK_ENDPOINTS"] == ""  # off by default, everywhere
    _production_settings("relay", monkeypatch, _secret_names("relay"))
    monkeypatch.setenv("PW_WEBHOOK_ENDPOINTS", "https://hooks.example/pw")
    settings = Settings()
    assert settings.webhook_endpoints == ["https://hooks.example/pw"]
    require_for("relay", settings)
    monkeypatch.delenv("PW_WEBHOOK_SECRET")
    with pytest.raises(StartupRefused, match="PW_WEBHOOK_SECRET"):
        require_for("relay", Settings())


def test_the_redis_url_is_tls_and_the_topology_suits_the_client() -> None:
    secret = _resource("aws_secretsmanager_secret_version", "redis_url")["secret_string"]
    assert secret.startswith("rediss://:")
    group = _resource("aws_elasticache_replication_group", "index")
    assert group["transit_encryption_enabled"] is True
    assert group["at_rest_encryption_enabled"] is True
    assert group["automatic_failover_enabled"] is True
    assert "aws_secretsmanager_secret_version.redis_auth_token" in group["auth_token"]
    # A cluster-mode-enabled group answers MOVED, which only a cluster client follows.
    if group["cluster_mode"] != "disabled":
        assert "RedisCluster" in inspect.getsource(index_factory), (
            "cluster mode needs redis.asyncio.RedisCluster in adapters/index_factory.py"
        )


def test_the_database_is_private_encrypted_and_survives_an_az() -> None:
    db = _resource("aws_db_instance", "store")
    assert db["engine"] == "postgres"
    for flag in ("storage_encrypted", "multi_az", "deletion_protection"):
        assert db[flag] is True, flag
    assert db["publicly_accessible"] is False
    assert db["performance_insights_kms_key_id"]


def _cli_commands() -> dict[str, Any]:
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_a_real_cli_command(service: str) -> None:
    command = _parsed()["locals"]["services"][service]["command"]
    commands = _cli_commands()
    assert command[0] in commands, f"`payment-window {command[0]}` is not a command"
    options = {opt for param in commands[command[0]].params for opt in param.opts}
    assert {arg for arg in command[1:] if arg.startswith("--")} <= options


def _skip_comments() -> list[tuple[str, str]]:
    return re.findall(r"#\s*checkov:skip=(CKV2?_[A-Z0-9]+_\d+)(?::(.*))?", _source())


def test_every_checkov_skip_gives_a_reason() -> None:
    for check, reason in _skip_comments():
        assert len((reason or "").split()) >= MIN_REASON_WORDS, f"{check}: no written reason"


def _checkov_installed() -> bool:
    return (ROOT / ".venv-checkov" / "bin" / "checkov").exists()


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(
    unavailable: Callable[[str], NoReturn],
) -> None:
    if not _checkov_installed():
        unavailable("checkov is not installed: run scripts/checkov.sh --install")
    result = subprocess.run(
        [str(CHECKOV), "-d", str(TERRAFORM), "--framework", "terraform", "--compact", "-o", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-4000:]}"
    reports = json.loads(result.stdout)
    report = reports[0] if isinstance(reports, list) else reports
    assert report["summary"]["parsing_errors"] == 0
    failed = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report["results"].get("failed_checks", [])
    ]
    assert failed == [], "\n".join(failed)
    assert report["summary"]["passed"] > 0
    skipped = report["results"].get("skipped_checks", [])
    for check in skipped:
        reason = check.get("check_result", {}).get("suppress_comment") or ""
        assert len(reason.split()) >= MIN_REASON_WORDS, f"{check['check_id']}: {reason!r}"
    # A skip that no longer matches anything is stale: remove it rather than keep it around.
    used = {check["check_id"] for check in skipped}
    assert {check for check, _ in _skip_comments()} <= used


def _service_processes() -> dict[str, tuple[str, dict[str, str]]]:
    """Each ECS service's `payment-window` command and its own environment (beside the common)."""
    services = _parsed()["locals"]["services"]
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for service, body in services.items():
        environment = body.get("environment", {})
        assert isinstance(environment, dict), f"{service}: environment is not a map"
        found[service] = (body["command"][0], {k: str(v) for k, v in environment.items()})
    return found


def _loops(service: str) -> frozenset[Loop]:
    process, environment = _service_processes()[service]
    names = {"PW_SERVE_LOOPS": "serve_loops", "PW_WORKER_LOOPS": "worker_loops"}
    assert set(environment) <= set(names), f"{service}: unexpected {environment}"
    settings = Settings(
        database_url="postgresql://pw:pw@db:5432/pw",
        redis_url="rediss://:token@redis:6379/0",
        **{names[key]: value for key, value in environment.items()},  # type: ignore[arg-type]
    )
    return loops_for(process, settings)


def test_each_task_runs_exactly_the_loops_its_role_and_secrets_allow() -> None:
    services = _service_processes()
    assert set(services) == set(SERVICES)
    publishers = {
        service for service in SERVICES if '"sns:Publish"' in _task_policy_source(service)
    }
    relays = {service for service in SERVICES if Loop.RELAY in _loops(service)}
    assert publishers == relays == {"relay"}
    for service in SERVICES:
        if Loop.WORKER in _loops(service):
            # The expiry worker calls Stripe and claims from Redis.
            assert {"PW_STRIPE_API_KEY", "PW_REDIS_URL"} <= _secret_names(service), service
        if Loop.RELAY in _loops(service) and service == "relay":
            assert "PW_REDIS_URL" not in _secret_names(service), "the relay needs no Redis"
    assert _loops("worker") == {Loop.WORKER}
    # The API runs no loop in production: it may neither publish nor hold claims.
    assert _loops("api") == frozenset()


def _task_policy_source(service: str) -> str:
    """Every IAM policy attached to the service's task role, as source text."""
    policies = _parsed()["resource"].get("aws_iam_role_policy", {})
    attached = [
        name
        for name, body in policies.items()
        if body["role"]
        in (f'${{aws_iam_role.task["{service}"].id}}', "${aws_iam_role.task[each.key].id}")
    ]
    source = _source()
    texts = []
    for name in attached:
        document = re.search(rf'data "aws_iam_policy_document" "{name}" \{{.*?\n\}}', source, re.S)
        if document:
            texts.append(document.group(0))
    return "\n".join(texts)
