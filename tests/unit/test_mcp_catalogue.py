"""The MCP tools are written once: the server's catalogue (built from the API's
pydantic models), the SDK's generated copy, and a handler for each on both sides."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import mcp_types as types
from sandbox_ide.mcp import layer, stdio

from sandboxes.api.code import RunIn
from sandboxes.api.schemas import ExecIn, SandboxIn
from sandboxes.mcp import catalogue, tools


def test_the_sdk_copy_is_generated_from_the_models() -> None:
    """`manage.py mcp_tools` rewrites it; this fails when someone forgot to."""
    assert catalogue.SDK_COPY.read_text() == catalogue.as_json()
    assert [t.name for t in layer.tool_list()] == [t.name for t in catalogue.TOOLS]


def test_every_tool_has_a_handler_on_both_transports() -> None:
    names = set(catalogue.BY_NAME)
    assert set(tools.HANDLERS) == names
    assert set(stdio.HANDLERS) == names


def test_arguments_are_the_apis_request_models() -> None:
    assert issubclass(catalogue.BY_NAME["exec"].arguments, ExecIn)
    assert issubclass(catalogue.BY_NAME["run_code"].arguments, RunIn)
    assert catalogue.BY_NAME["create_sandbox"].arguments is SandboxIn
    schema = layer.tool_schemas()["exec"]
    api = ExecIn.model_json_schema()
    for field, spec in api["properties"].items():
        assert schema["properties"][field] == spec
    assert schema["properties"]["sandbox_id"]["type"] == "string"


def test_kept_output_shows_both_ends_and_marks_the_gap() -> None:
    kept = layer.Kept(limit=10)
    for piece in ("abc", "defgh", "ijklmnop", "qrstuvwxyz"):
        kept.add(piece)
    text = kept.text()
    assert text.startswith("abcde") and text.endswith("vwxyz")
    assert "[... 16 characters of output left out ...]" in text
    small = layer.Kept(limit=10)
    small.add("hello")
    assert small.text() == "hello" and small.dropped == 0


def test_code_results_become_text_and_images() -> None:
    result = layer.code_result(
        {
            "stdout": "out\n",
            "stderr": "",
            "results": [
                {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
                {"image/svg+xml": "<svg/>"},
                {"text/plain": "42"},
            ],
            "error": {"name": "ValueError", "value": "bad", "traceback": "tb"},
        }
    )
    kinds = [(type(c).__name__, getattr(c, "mime_type", None)) for c in result.content]
    assert kinds == [
        ("TextContent", None),
        ("ImageContent", "image/png"),
        ("ImageContent", "image/svg+xml"),
        ("TextContent", None),
        ("TextContent", None),
    ]
    svg = result.content[2]
    assert isinstance(svg, types.ImageContent) and svg.data == "PHN2Zy8+"
    assert result.structured_content is not None and result.structured_content["images"] == 2


def test_errors_carry_code_and_sentence() -> None:
    result = layer.error_result("not_found", "No sandbox with id 'x'.")
    assert result.is_error
    assert json.loads(json.dumps(result.structured_content)) == {
        "error": {"code": "not_found", "message": "No sandbox with id 'x'."}
    }


def test_resource_uris() -> None:
    assert layer.parse_uri("sandbox://abc/workspace/a b.py") == ("abc", "/workspace/a b.py")
    for bad in ("file:///etc/passwd", "sandbox://abc", "sandbox:///etc"):
        try:
            layer.parse_uri(bad)
        except layer.ToolFailure as exc:
            assert exc.code == "invalid_uri"
        else:
            raise AssertionError(bad)


def refusal(
    check: Callable[[str, dict[str, Any]], object], args: dict[str, Any]
) -> tuple[str, str]:
    try:
        check("exec", args)
    except layer.ToolFailure as exc:
        return exc.code, exc.message
    raise AssertionError(f"{args} was accepted")


def test_both_transports_word_missing_and_unknown_arguments_alike() -> None:
    for args in (
        {"sandbox_id": "x"},
        {"sandbox_id": "x", "command": "true", "bogus": 1},
        {"command": "true"},
    ):
        assert refusal(tools.parse, args) == refusal(stdio.check_arguments, args)
