"""Request and response shapes of API v1 (they also generate the OpenAPI document).

Inputs are strict: a number where a string belongs, or an unknown field, is a 400
with the field named, never a silent coercion.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from ninja import Schema
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from sandboxes.egress.policy import check_entries
from sandboxes.envpolicy import refuse_reserved
from sandboxes.models import NAME_PATTERN

MAX_SLEEP_AFTER = 30 * 24 * 3600

SandboxName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
EnvMap = dict[str, str]


class StrictIn(Schema):
    model_config = ConfigDict(extra="forbid", strict=True)


def check_env(env: EnvMap | None) -> EnvMap | None:
    if env is None:
        return env
    if len(env) > 256:
        raise ValueError("at most 256 environment variables")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"invalid environment variable name {key!r}")
    refuse_reserved(env)  # a 400 reserved_env of its own, not a validation error
    return env


class ErrorBody(Schema):
    code: str
    message: str


class ErrorOut(Schema):
    error: ErrorBody


SnapshotId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{12}$")]


class EgressAllow(StrictIn):
    """Only these CIDRs and host names (``*.example.org`` for every name below)."""

    allow: list[str]

    @field_validator("allow")
    @classmethod
    def _entries(cls, allow: list[str]) -> list[str]:
        return check_entries(allow)  # 400 invalid_egress / egress_forbidden, naming the entry


class EgressAllowOut(Schema):
    allow: list[str]


Egress = Literal["all", "none"] | EgressAllow


class SandboxIn(StrictIn):
    name: SandboxName | None = None
    template: Annotated[str, StringConstraints(max_length=64)] | None = None
    # A snapshot of yours (POST /sandboxes/{id}/snapshots) to start from.
    snapshot: SnapshotId | None = None
    env: EnvMap | None = None
    sleep_after: Annotated[int, Field(ge=0, le=MAX_SLEEP_AFTER)] | None = None
    keep_alive: bool | None = None
    egress: Egress | None = None

    _env = field_validator("env")(check_env)

    @model_validator(mode="after")
    def _template_or_snapshot(self) -> SandboxIn:
        if self.template and self.snapshot:
            raise ValueError("give a template or a snapshot, not both")
        return self


class SleepIn(StrictIn):
    tier: Literal["pause", "stop"] = "pause"


class SandboxPatch(StrictIn):
    env: EnvMap | None = None
    sleep_after: Annotated[int, Field(ge=0, le=MAX_SLEEP_AFTER)] | None = None
    keep_alive: bool | None = None
    egress: Egress | None = None

    _env = field_validator("env")(check_env)


Visibility = Literal["private", "course", "authenticated", "public"]


class PortOut(Schema):
    port: int
    name: str = ""
    url: str
    token: str
    # Who may open it, that in one sentence, when a shared level ends (or ended) and
    # why it ended ("expired", "revoked"), the short share link.
    visibility: Visibility = "public"
    audience: str = ""
    expires_at: datetime | None = None
    ended: Literal["expired", "revoked"] | None = None
    share_url: str = ""
    # Derived, for clients of old: anything but public needs a login.
    private: bool = False


class DiskOut(Schema):
    used_bytes: int
    quota_bytes: int
    exceeded: bool
    message: str = ""


class SandboxOut(Schema):
    id: str
    name: str
    status: str
    status_detail: str = ""
    template: str = ""
    created_at: datetime
    last_active_at: datetime
    sleep_after: int
    keep_alive: bool
    image: str
    env: EnvMap
    ports: list[PortOut] = []
    sleep_tier: str = ""
    egress: Literal["all", "none"] | EgressAllowOut = "all"
    # Why egress is "none" although more was asked for (empty when it is as asked).
    egress_detail: str = ""
    # GET /sandboxes/{id} of a running sandbox with a disk quota: what its files use.
    disk: DiskOut | None = None
    # When a changed setting takes effect (see ``lifecycle.SETTINGS_APPLY``).
    settings_apply: dict[str, str] = {}


class SandboxList(Schema):
    sandboxes: list[SandboxOut]


class SnapshotIn(StrictIn):
    name: SandboxName | None = None
    # Running programs' memory too: not supported (answered with 400).
    memory: bool = False


class SnapshotOut(Schema):
    id: str
    name: str
    sandbox: str
    size_bytes: int
    created_at: datetime
    paused_ms: float


class SnapshotList(Schema):
    snapshots: list[SnapshotOut]


class ForkIn(StrictIn):
    count: Annotated[int, Field(ge=1, le=10)] = 1


class ForkError(Schema):
    index: int
    code: str
    message: str


class ForkOut(Schema):
    snapshot: SnapshotOut
    sandboxes: list[SandboxOut]
    errors: list[ForkError]


class RestoreIn(StrictIn):
    snapshot: SnapshotId


def _check_command(value: str | list[str]) -> str | list[str]:
    parts = [value] if isinstance(value, str) else value
    if any("\0" in part for part in parts):
        raise ValueError("command must not contain NUL bytes")
    if isinstance(value, str) and not value.strip():
        raise ValueError("command is empty")
    return value


# A shell string (run under `bash -lc`) or an argv list (run as is).
Command = Annotated[
    Annotated[str, StringConstraints(min_length=1)] | Annotated[list[str], Field(min_length=1)],
    AfterValidator(_check_command),
]


class ExecIn(StrictIn):
    command: Command
    cwd: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    env: EnvMap | None = None
    timeout: Annotated[float, Field(gt=0)] | None = None
    stdin: str | None = None
    # A session from POST /sessions: its cwd and env, and it keeps `cd` / `export`.
    session: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] | None = None

    _env = field_validator("env")(check_env)


class ExecOut(Schema):
    stdout: str
    stderr: str
    exit_code: int | None
    success: bool
    timed_out: bool
    duration_ms: float
    truncated: bool = False
