"""Extract the parts of Stripe's OpenAPI description (`stripe/openapi`, `openapi/spec3.json`
or `spec3.yaml`) that the local Stripe stand-in imitates: the Checkout Session endpoints this
service calls and the `checkout.session` schema, into devstripe's vendored extract.

    python scripts/extract_stripe_spec.py SPEC [--commit SHA] [--out PATH]

Other API resources a session refers to (a customer, a PaymentIntent, ...) become stubs naming
the resource: the stand-in only needs to know that such a field holds an id or an object, and
the extract stays small. Run it again on a newer spec to follow Stripe's changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "devstripe" / "src" / "devstripe" / "spec" / "checkout_sessions.json"
PATHS = {
    "/v1/checkout/sessions": ("get", "post"),
    "/v1/checkout/sessions/{session}": ("get",),
    "/v1/checkout/sessions/{session}/expire": ("post",),
}
ROOT_SCHEMA = "checkout.session"
# Kept from each operation: what validating a request needs.
OPERATION_KEYS = ("operationId", "parameters", "requestBody")
SCHEMA_NOISE = ("description", "x-stripeBypassValidation", "title")


def load(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        loaded: dict[str, Any] = json.loads(text)
        return loaded
    import yaml  # only for a YAML spec

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loaded = yaml.load(text, Loader=loader)  # a safe loader
    return loaded


def is_resource(schema: dict[str, Any]) -> bool:
    """A top-level API object of its own (it has an id and is retrievable), not a sub-hash."""
    return "x-resourceId" in schema and "id" in schema.get("properties", {})


class Extractor:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = spec["components"]["schemas"]
        self.kept: dict[str, Any] = {}

    def schema(self, name: str) -> None:
        if name in self.kept:
            return
        self.kept[name] = {}
        self.kept[name] = self.walk(self.schemas[name])

    def walk(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            target = self.schemas[name]
            if name != ROOT_SCHEMA and is_resource(target):
                # Another API resource: an expanded object, not validated field by field.
                return {"type": "object", "x-stripeResource": target["x-resourceId"]}
            self.schema(name)
            return {"$ref": ref}
        return {
            key: self.walk(value)
            for key, value in node.items()
            if key not in SCHEMA_NOISE and not key.startswith("x-expansion")
        }


def extract(spec: dict[str, Any], source: str) -> dict[str, Any]:
    extractor = Extractor(spec)
    paths: dict[str, Any] = {}
    for path, methods in PATHS.items():
        item = spec["paths"][path]
        paths[path] = {
            method: extractor.walk(
                {k: item[method][k] for k in OPERATION_KEYS if k in item[method]}
            )
            for method in methods
        }
    extractor.schema(ROOT_SCHEMA)
    return {
        "openapi": spec.get("openapi"),
        "info": {
            "title": "Stripe API: the Checkout Session endpoints the stand-in imitates",
            "version": spec["info"]["version"],
            "x-source": source,
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(extractor.kept.items()))},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="spec3.json or spec3.yaml from stripe/openapi")
    parser.add_argument("--commit", default="unknown", help="the stripe/openapi commit read")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    source = f"github.com/stripe/openapi@{args.commit}:openapi/{args.spec.name}"
    extracted = extract(load(args.spec), source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(extracted, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    size = args.out.stat().st_size
    print(f"{args.out}: API version {extracted['info']['version']}, {size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
