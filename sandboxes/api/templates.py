"""API v1: templates and their starter code (docs/api.md, Templates and starter code).

Templates are their owner's (staff may use any); someone else's answers 404 like a
missing one. The values are validated by the service (sandboxes/templates/
service.py), which the classroom also calls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import Router, Schema
from pydantic import StringConstraints, field_validator

from sandboxes import lifecycle
from sandboxes.errors import BadRequest, PayloadTooLarge
from sandboxes.models import Template
from sandboxes.templates import MAX_UPLOAD_BYTES, launch, pool, starter
from sandboxes.templates import service as templates

from .auth import AuthedRequest
from .schemas import EnvMap, ErrorOut, StrictIn, check_env

router = Router(tags=["templates"])
ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    413: ErrorOut,
    429: ErrorOut,
    503: ErrorOut,
}

Text = Annotated[str, StringConstraints(max_length=16 * 1024)]
Short = Annotated[str, StringConstraints(max_length=500)]


class TemplatePatch(StrictIn):
    name: Annotated[str, StringConstraints(max_length=39)] | None = None
    description: Text | None = None
    image: Short | None = None
    repo_url: Short | None = None
    repo_branch: Short | None = None
    setup_command: Text | None = None
    dockerfile: Annotated[str, StringConstraints(max_length=256 * 1024)] | None = None
    env: EnvMap | None = None
    limits: dict[str, Any] | None = None
    open_files: list[Annotated[str, StringConstraints(max_length=1024)]] | None = None
    preview_port: int | None = None
    warm_pool: int | None = None

    _env = field_validator("env")(check_env)


class TemplateIn(TemplatePatch):
    name: Annotated[str, StringConstraints(max_length=39)]


class TemplateOut(Schema):
    id: str
    name: str
    description: str
    image: str
    repo_url: str
    repo_branch: str
    setup_command: str
    dockerfile: str
    built_image: str
    env: dict[str, str]
    limits: dict[str, Any]
    open_files: list[str]
    preview_port: int | None
    warm_pool: int
    starter_head: str
    created_at: datetime
    updated_at: datetime


class TemplateList(Schema):
    templates: list[TemplateOut]


class ConflictOut(Schema):
    path: str
    kept_as: str | None = None
    reason: str = ""


class StarterUpdateOut(Schema):
    status: str
    head: str
    commit: str | None = None
    updated: list[str] = []
    restored: list[str] = []
    conflicts: list[ConflictOut] = []
    saved_work: bool = False


def _shown_url(url: str) -> str:
    """The repository URL without its password (the owner typed it; nobody reads it back)."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def template_out(template: Template) -> dict[str, Any]:
    return {
        "id": template.id,
        "name": template.name,
        "description": template.description,
        "image": template.image,
        "repo_url": _shown_url(template.repo_url),
        "repo_branch": template.repo_branch,
        "setup_command": template.setup_command,
        "dockerfile": template.dockerfile,
        "built_image": template.built_image,
        "env": template.env,
        "limits": template.limits,
        "open_files": template.open_files,
        "preview_port": template.preview_port,
        "warm_pool": template.warm_pool,
        "starter_head": template.starter_head,
        "created_at": template.created_at,
        "updated_at": template.updated_at,
    }


@router.get("/templates", response={200: TemplateList, **ERRORS})
async def list_templates(request: AuthedRequest) -> dict[str, Any]:
    return {"templates": [template_out(t) for t in await templates.list_templates(request.auth)]}


@router.post("/templates", response={201: TemplateOut, **ERRORS})
async def create_template(
    request: AuthedRequest, payload: TemplateIn
) -> tuple[int, dict[str, Any]]:
    """Create a template; a ``repo_url`` is fetched at once (400 with git's reason).
    A ``warm_pool`` beyond what the owner may pool answers 429."""
    values = payload.model_dump(exclude_unset=True)
    await pool.limit_warm_pool(request.auth.pk, values)
    template = await templates.create_template(request.auth, values)
    return 201, template_out(template)


@router.get("/templates/{template_id}", response={200: TemplateOut, **ERRORS})
async def get_template(request: AuthedRequest, template_id: str) -> dict[str, Any]:
    return template_out(await templates.get_template(request.auth, template_id))


@router.patch("/templates/{template_id}", response={200: TemplateOut, **ERRORS})
async def patch_template(
    request: AuthedRequest, template_id: str, payload: TemplatePatch
) -> dict[str, Any]:
    """Change a template; a ``warm_pool`` beyond what its owner may pool answers 429."""
    template = await templates.get_template(request.auth, template_id)
    changes = payload.model_dump(exclude_unset=True)
    await pool.limit_warm_pool(template.owner_id, changes, template.id)
    return template_out(await templates.update_template(template, changes))


@router.delete("/templates/{template_id}", response={204: None, **ERRORS})
async def delete_template(request: AuthedRequest, template_id: str) -> HttpResponse:
    """Delete a template (409 while a course uses it)."""
    template = await templates.get_template(request.auth, template_id)
    await templates.delete_template(template)
    return HttpResponse(status=204)


@router.post("/templates/{template_id}/refresh", response={200: TemplateOut, **ERRORS})
async def refresh_template(request: AuthedRequest, template_id: str) -> dict[str, Any]:
    """Fetch the template's repository again (its branch's newest commit)."""
    template = await templates.get_template(request.auth, template_id)
    await starter.import_repo(template)
    return template_out(template)


@router.put(
    "/templates/{template_id}/files",
    response={200: TemplateOut, **ERRORS},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "files": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                        },
                    }
                }
            },
            "description": "Files for the starter commit. Each part's field name is its "
            "path in the starter (e.g. `src/main.py`); parts named `file` or `files` use "
            "their file name. An optional `message` field is the commit message.",
        }
    },
)
async def put_template_files(request: AuthedRequest, template_id: str) -> dict[str, Any]:
    """Commit uploaded files on top of the template's starter (a new one if none)."""
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + 1024 * 1024:
        raise PayloadTooLarge(
            f"The files may add up to at most {MAX_UPLOAD_BYTES} bytes.",
            code="payload_too_large",
        )
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise BadRequest("Send the files as multipart/form-data.", code="invalid_upload")
    template = await templates.get_template(request.auth, template_id)
    try:
        # Django parses multipart bodies by itself only for POST.
        fields, uploads = request.parse_file_upload(request.META, request)
    except RequestDataTooBig:
        raise PayloadTooLarge() from None
    except (MultiPartParserError, SuspiciousOperation) as exc:
        raise BadRequest(f"The multipart body is not valid: {exc}", code="invalid_upload") from None
    entries: list[tuple[str, bytes]] = []
    for field in uploads:
        for upload in uploads.getlist(field):
            path = upload.name if field in ("file", "files") else field
            entries.append((path or "", upload.read()))
    if not entries:
        raise BadRequest("The multipart body holds no files.", code="invalid_upload")
    message = fields.get("message", "") or f"Upload {len(entries)} starter file(s)"
    author = (request.auth.get_username() or "Teacher", request.auth.email or "teacher@localhost")
    await starter.import_files(template, entries, message, author=author)
    return template_out(template)


@router.post("/sandboxes/{sandbox_id}/starter/update", response={200: StarterUpdateOut, **ERRORS})
async def update_starter(request: AuthedRequest, sandbox_id: str) -> dict[str, Any]:
    """Merge the newest starter of the sandbox's template into its workspace like
    nbgitpuller: the owner's work is never overwritten; conflicts are kept aside."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    return await launch.update_sandbox_starter(sandbox)


class StarterHintsOut(Schema):
    template: str | None = None
    name: str = ""
    open_files: list[str] = []
    preview_port: int | None = None
    starter_head: str = ""


@router.get("/sandboxes/{sandbox_id}/starter", response={200: StarterHintsOut, **ERRORS})
async def starter_hints(request: AuthedRequest, sandbox_id: str) -> dict[str, Any]:
    """What the IDE opens for a sandbox made from a template: its files to open and
    the port to preview (readable by whoever may look at the sandbox)."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, action="view")
    template = await launch.template_of(sandbox)
    if template is None:
        return {}
    return {
        "template": template.id,
        "name": template.name,
        "open_files": template.open_files,
        "preview_port": template.preview_port,
        "starter_head": template.starter_head,
    }
