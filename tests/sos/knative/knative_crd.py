"""A strict validator for Knative Services, built from Knative's own CRD schema.

``crds/service.yaml`` is the CustomResourceDefinition of ``services.serving.knative.dev``
copied unchanged from knative/serving (Apache-2.0, see ``crds/LICENSE`` and
``crds/README.md``). Its ``openAPIV3Schema`` is a Kubernetes *structural* schema: an
object lists its known fields, and the API server prunes (or, with strict field
validation, refuses) any other field unless the schema says
``x-kubernetes-preserve-unknown-fields``. The conversion below turns that into plain JSON
Schema: ``additionalProperties: false`` on every object that neither preserves unknown
fields nor declares a map, ``x-kubernetes-int-or-string`` into integer-or-string, and the
root ``metadata`` (which the API server checks as ObjectMeta) into ObjectMeta's fields.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

CRDS = Path(__file__).parent / "crds"

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": "string"},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "managedFields": {"type": "array", "items": {"type": "object"}},
    },
}


def strict(node: dict[str, Any]) -> dict[str, Any]:
    """One structural-schema node as strict JSON Schema (recursively)."""
    out = {key: value for key, value in node.items() if not key.startswith("x-kubernetes-")}
    out.pop("description", None)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    if "properties" in node:
        out["properties"] = {key: strict(value) for key, value in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = strict(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(node["additionalProperties"])
    elif (
        node.get("type") == "object"
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def service_schema() -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / "service.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = OBJECT_META
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return schema


@cache
def _validator() -> Any:
    return jsonschema_rs.Draft7Validator(service_schema())


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Every way ``manifest`` breaks the Service CRD schema, as 'path: message'."""
    errors = []
    for error in _validator().iter_errors(manifest):
        path = ".".join(str(part) for part in error.instance_path) or "(root)"
        errors.append(f"{path}: {error.message}")
    if manifest.get("apiVersion") != "serving.knative.dev/v1" or manifest.get("kind") != "Service":
        errors.append("(root): apiVersion/kind must be serving.knative.dev/v1 Service")
    return errors
