"""Requests checked against Stripe's own API description, as Stripe checks them.

`spec/checkout_sessions.json` is an extract of Stripe's OpenAPI description (`stripe/openapi`,
made by `scripts/extract_stripe_spec.py`; its `info` names the API version and commit). A form
body is checked against its operation's schema: a parameter the schema does not name is
`parameter_unknown`; a value of the wrong type, outside an enum or too long is
`parameter_invalid_*`, each in Stripe's error shape and naming the parameter as Stripe does
(`line_items[0][price_data][currency]`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from devstripe.store import JsonObject, StripeError

_SPEC_FILE = "spec/checkout_sessions.json"


@cache
def spec() -> JsonObject:
    loaded: JsonObject = json.loads(files("devstripe").joinpath(_SPEC_FILE).read_text("utf-8"))
    return loaded


def api_version() -> str:
    return str(spec()["info"]["version"])


def schema(name: str) -> JsonObject:
    found: JsonObject = spec()["components"]["schemas"][name]
    return found


def _resolve(node: JsonObject) -> JsonObject:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return schema(ref.rsplit("/", 1)[-1])
    return node


def body_schema(method: str, path_template: str) -> JsonObject | None:
    operation = spec()["paths"].get(path_template, {}).get(method.lower())
    if operation is None or "requestBody" not in operation:
        return None
    content = operation["requestBody"]["content"]
    found: JsonObject = content["application/x-www-form-urlencoded"]["schema"]
    return found


def check_body(method: str, path_template: str, params: JsonObject) -> None:
    """Refuse, as Stripe would, a body its operation's schema does not allow."""
    found = body_schema(method, path_template)
    if found is not None:
        _check_form(params, found, "")


def _name(prefix: str, key: str | int) -> str:
    return f"{prefix}[{key}]" if prefix else str(key)


def _unknown(param: str) -> StripeError:
    return StripeError(
        400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param
    )


def _invalid(param: str, kind: str, message: str) -> StripeError:
    return StripeError(400, message, code=f"parameter_invalid_{kind}", param=param)


def _check_form(value: Any, node: JsonObject, param: str) -> None:
    """A form value (strings, nested dicts and lists) against a schema node."""
    node = _resolve(node)
    if "anyOf" in node:
        problems: list[StripeError] = []
        for option in node["anyOf"]:
            try:
                _check_form(value, option, param)
                return
            except StripeError as error:
                problems.append(error)
        # Stripe names the most specific refusal: an unknown key inside an object wins.
        raise next((p for p in problems if p.code == "parameter_unknown"), problems[0])
    # `""` unsets a field in Stripe's form encoding; an enum lists it where it is allowed.
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        _check_object(value, node, param)
    elif kind == "array":
        items = value if isinstance(value, list) else None
        if isinstance(value, dict) and all(str(k).isdigit() for k in value):
            items = [value[k] for k in sorted(value, key=int)]
        if items is None:
            raise _invalid(param, "array", f"Invalid array: {param} must be an array")
        for index, item in enumerate(items):
            _check_form(item, node.get("items", {}), _name(param, index))
    elif kind == "integer":
        if not isinstance(value, str | int) or not str(value).lstrip("-").isdigit():
            raise _invalid(param, "integer", f"Invalid integer: {_shown(value)}")
    elif kind == "boolean":
        if value not in ("true", "false", True, False):
            raise _invalid(param, "boolean", f"Invalid boolean: {_shown(value)}")
    elif kind == "number":
        try:
            float(value)
        except (TypeError, ValueError):
            raise _invalid(param, "number", f"Invalid decimal: {_shown(value)}") from None
    elif kind == "string":
        _check_string(value, node, param)


def _check_object(value: Any, node: JsonObject, param: str) -> None:
    if not isinstance(value, dict):
        if value == "" and node.get("enum") == [""]:
            return
        raise _invalid(param, "hash", f"Invalid hash: {param} must be a hash")
    properties: JsonObject = node.get("properties", {})
    extra = node.get("additionalProperties", not properties)
    for key, item in value.items():
        if key in properties:
            _check_form(item, properties[key], _name(param, key))
        elif isinstance(extra, dict):
            _check_form(item, extra, _name(param, key))
        elif not extra:
            raise _unknown(_name(param, key))
    for key in node.get("required", []):
        if key not in value:
            name = _name(param, key)
            raise StripeError(
                400, f"Missing required param: {name}.", code="parameter_missing", param=name
            )


def _check_string(value: Any, node: JsonObject, param: str) -> None:
    if not isinstance(value, str):
        raise _invalid(param, "string", f"Invalid string: {param} must be a string")
    enum = node.get("enum")
    if enum is not None and value not in enum:
        choices = ", ".join(str(choice) for choice in enum if choice != "")
        raise _invalid(param, "string", f"Invalid {param}: must be one of {choices}")
    limit = node.get("maxLength")
    if isinstance(limit, int) and len(value) > limit:
        raise _invalid(
            param,
            "string",
            f"Invalid string: {_shown(value)}; must be at most {limit} characters",
        )


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 23 else f"{text[:10]}...{text[-10:]}"


def problems(value: Any, node: JsonObject | str, where: str = "") -> list[str]:
    """Where a returned object departs from the spec's schema (a schema name, or a node): a
    missing required field, a field the schema does not name, a wrong type or enum value."""
    if isinstance(node, str):
        where = where or node
        node = schema(node)
    node = _resolve(node)
    if value is None:
        return [] if node.get("nullable") else [f"{where}: null where the schema allows none"]
    if "anyOf" in node:
        options = [problems(value, option, where) for option in node["anyOf"]]
        return [] if any(not found for found in options) else min(options, key=len)
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        return _object_problems(value, node, where)
    expected = _PYTHON_TYPES.get(str(kind))
    if expected is not None and (
        not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool))
    ):
        return [f"{where}: {type(value).__name__} where the schema has {kind}"]
    if "enum" in node and value not in node["enum"]:
        return [f"{where}: {value!r} is not one of {node['enum']}"]
    if kind == "array":
        return [
            found
            for index, item in enumerate(value)
            for found in problems(item, node.get("items", {}), f"{where}[{index}]")
        ]
    return []


_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "boolean": bool,
    "array": list,
    "number": (int, float),
}


def _object_problems(value: Any, node: JsonObject, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {type(value).__name__} where the schema has an object"]
    if "x-stripeResource" in node:
        return []  # another API resource, expanded: not part of this extract
    properties: JsonObject = node.get("properties", {})
    extra = node.get("additionalProperties")
    found = [
        f"{where}.{key}: required but missing"
        for key in node.get("required", [])
        if key not in value
    ]
    for key, item in value.items():
        if key in properties:
            found += problems(item, properties[key], f"{where}.{key}")
        elif isinstance(extra, dict):
            found += problems(item, extra, f"{where}.{key}")
        elif properties:
            found.append(f"{where}.{key}: not in the schema")
    return found
