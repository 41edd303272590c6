"""Builds signalling/openapi.json, what `GET /v1/openapi.json` serves, from the
documents in docs/ (the sources): docs/rooms-openapi.yaml (OpenAPI 3.1) with
docs/portal-openapi.yaml (OpenAPI 3.0), docs/staff-openapi.yaml (3.1) and any other
in MERGED merged in, each under its tag; two documents may not define the same path
or component. A merged document refers to the rooms document's components as
`rooms-openapi.yaml#/components/...` (one source per schema); the built file has
them as local references. After editing any of them, run

    PYTHONPATH=. python -m tests.openapi_build

(tests/test_openapi.py fails while the built file is stale). The server reads JSON
only: PyYAML is a test dependency, and docs/ is not installed with the package.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ROOT / "docs" / "rooms-openapi.yaml"
PORTAL = ROOT / "docs" / "portal-openapi.yaml"
STAFF = ROOT / "docs" / "staff-openapi.yaml"
SERVED = ROOT / "signalling" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# Merged into the rooms document, each under its tag (a new API's own document goes here).
MERGED = [
    (PORTAL, {"name": "portal", "description": "Patient-portal invitations (docs/portal.md)"}),
    (STAFF, {"name": "staff", "description": "Staff sign-in, sessions and practice users"}),
]


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def as_31(node: Any) -> Any:
    """An OpenAPI 3.0 schema tree in 3.1 terms: `nullable: true` becomes a "null" type."""
    if isinstance(node, list):
        return [as_31(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_31(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def local(node: Any, prefix: str = ROOMS.name + "#") -> Any:
    """A merged document's references to the rooms document, as references within it."""
    if isinstance(node, list):
        return [local(item, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: local(value, prefix) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(prefix):
        out["$ref"] = "#" + ref.removeprefix(prefix)
    return out


def operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        item[method]
        for item in document.get("paths", {}).values()
        for method in METHODS
        if method in item
    ]


def settle(document: dict[str, Any], tag: str) -> dict[str, Any]:
    """Each operation states its own security (the documents' defaults differ) and a tag."""
    document = copy.deepcopy(document)
    default = document.pop("security", [])
    for operation in operations(document):
        operation.setdefault("security", default)
        operation.setdefault("tags", [tag])
    return document


def disjoint_union(name: str, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    clash = sorted(set(ours) & set(theirs))
    if clash:
        raise ValueError(f"both documents define {name} {clash[0]!r}: rename one")
    return {**ours, **theirs}


def merge(
    rooms: dict[str, Any], others: list[tuple[dict[str, Any], dict[str, str]]]
) -> dict[str, Any]:
    """The rooms document with each other document's paths, components and tag merged in."""
    out = settle(rooms, "rooms")
    for document, tag in others:
        theirs = settle(local(as_31(document)), tag["name"])
        out["paths"] = disjoint_union("the path", out["paths"], theirs["paths"])
        components = dict(out.get("components", {}))
        for section, entries in theirs.get("components", {}).items():
            components[section] = disjoint_union(section, components.get(section, {}), entries)
        out["components"] = components
        out["tags"] = [*out.get("tags", []), tag]
    return out


def built() -> str:
    others = [(load(path), tag) for path, tag in MERGED]
    return json.dumps(merge(load(ROOMS), others), indent=1) + "\n"


def main() -> None:
    SERVED.write_text(built())
    print(f"wrote {SERVED.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
