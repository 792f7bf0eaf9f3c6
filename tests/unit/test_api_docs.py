"""docs/api.md and the OpenAPI document name the same routes.

The reference is written by hand; this keeps it honest in both directions: a route
it documents must exist, and a route the server has must be documented. Routes are
the lines' backticked "`METHOD /api/v1/...`" spans, compared with the document the
server builds (the same one GET /api/v1/openapi.json answers), built in-process.
"""

from __future__ import annotations

import re
from pathlib import Path

from sandboxes.api import api

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/api/v1/[^`\s]*)`")
METHODS = {"get", "post", "put", "patch", "delete"}


def documented_routes() -> set[str]:
    return {f"{method} {path}" for method, path in ROUTE.findall(API_DOC.read_text())}


def served_routes() -> set[str]:
    document = api.get_openapi_schema(path_prefix="/api/v1")
    return {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
        if method in METHODS
    }


def test_every_documented_route_exists() -> None:
    unknown = documented_routes() - served_routes()
    assert not unknown, f"docs/api.md documents routes the server does not have: {unknown}"


def test_every_route_is_documented() -> None:
    missing = served_routes() - documented_routes()
    assert not missing, f"routes missing from docs/api.md: {sorted(missing)}"
