#!/usr/bin/env python3
"""Lambda exec wrapper: copies Secrets Manager values into the environment, then starts the runtime.

The expiry handler (`payment_window.lambda_handler.handler`) reads its settings from `PW_`
environment variables only, as the ECS containers receive them from their `secrets`, and Lambda
has no secret injection of its own. Lambda runs `$AWS_LAMBDA_EXEC_WRAPPER <runtime command>` once
per cold start: this reads `SECRET_ENV_ARNS` (a JSON object, variable name -> secret ARN), sets
each variable to its secret's string, and execs the runtime. A secret that cannot be read fails
the cold start, so the invocation fails and lands in the dead-letter queue instead of running
half-configured. Packaged at the root of the zip, executable (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

MAPPING_VARIABLE = "SECRET_ENV_ARNS"


def secret_environment(mapping: Mapping[str, str], client: Any) -> dict[str, str]:
    """Each variable of `mapping` with the string value of its secret."""
    return {
        name: client.get_secret_value(SecretId=arn)["SecretString"] for name, arn in mapping.items()
    }


def main(argv: list[str]) -> None:
    mapping = json.loads(os.environ.pop(MAPPING_VARIABLE, "{}") or "{}")
    if mapping:
        import boto3

        os.environ.update(secret_environment(mapping, boto3.client("secretsmanager")))
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
