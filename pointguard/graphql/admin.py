"""What a shop's admin does through the API (an API key of role `admin`): the program (read,
validate with every problem named by its field, publish a new version), the shop's API keys
and webhook secret, the program's analytics for a period, and dead letters (webhooks we could
not apply, deliveries that never got through) with their replay. And, for the operator of a
PointGuard installation (`POINTGUARD_OPERATOR_KEY`), creating merchants."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import msgspec
import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from pointguard.db import PgConnection
from pointguard.errors import MerchantInvalid, ProgramInvalid, QueryRefused
from pointguard.graphql.auth import Role
from pointguard.graphql.context import RequestContext
from pointguard.graphql.customer_tokens import customer_token_secret, derived_secrets
from pointguard.graphql.problems import FieldProblem, InvalidInput, NotFound, ProgramRejected
from pointguard.plugin import api_keys, deliveries, worker
from pointguard.plugin.merchants import (
    create_merchant,
    rotate_inbound_secret,
)
from pointguard.program.document.validate import parse_program
from pointguard.program.document.versions import program_history, program_in_force, save_program
from pointguard.program.reports.analytics import program_analytics

Context = Info[RequestContext, None]
MAX_DEAD_LETTERS = 100
MAX_DOCUMENT_CHARS = 256 * 1024 // 4  # well under the request's 64 KiB anyway


@strawberry.enum
class KeyRole(Enum):
    STOREFRONT = "storefront"
    REVIEWER = "reviewer"
    ADMIN = "admin"


@strawberry.enum
class DeadLetterKind(Enum):
    INBOX = "inbox"  # webhooks from the storefront we could not apply
    OUTBOX = "outbox"  # our webhooks to the storefront that never got through


@strawberry.type
class ProgramVersion:
    version: int
    effective_from: datetime


@strawberry.type(description="The program in force now, and every version.")
class AdminProgram:
    version: int
    effective_from: datetime
    document: JSON = strawberry.field(description="The program document, as JSON.")
    versions: list[ProgramVersion]


@strawberry.type
class ProgramValidation:
    valid: bool
    problems: list[FieldProblem]


@strawberry.type
class ProgramPublished:
    version: int
    effective_from: datetime


@strawberry.type
class ApiKey:
    name: str
    role: KeyRole
    created_at: datetime
    revoked_at: datetime | None


@strawberry.type(description="A new API key: `key` is shown this once, store it now.")
class CreatedApiKey:
    name: str
    role: KeyRole
    key: str


@strawberry.type
class RevokedApiKey:
    name: str


@strawberry.type(description="The new webhook secret and what is derived from it.")
class RotatedSecret:
    webhook_secret: str
    customer_token_secret: str
    shopify_webhook_secret: str
    woocommerce_webhook_secret: str


@strawberry.type
class DeadLetter:
    id: strawberry.ID
    event_type: str
    attempts: int
    last_error: str | None
    at: datetime


@strawberry.type
class Replayed:
    replayed: int


@strawberry.type(description="A new merchant: its secrets and storefront key are shown once.")
class CreatedMerchant:
    merchant_id: strawberry.ID
    name: str
    webhook_secret: str
    customer_token_secret: str
    api_key: str
    outbound_public_key: str
    outbound_webhook_secret: str


PublishResult = Annotated[
    ProgramPublished | ProgramRejected, strawberry.union("PublishProgramResult")
]
CreateKeyResult = Annotated[CreatedApiKey | InvalidInput, strawberry.union("CreateApiKeyResult")]
RevokeKeyResult = Annotated[RevokedApiKey | NotFound, strawberry.union("RevokeApiKeyResult")]
CreateMerchantResult = Annotated[
    CreatedMerchant | InvalidInput, strawberry.union("CreateMerchantResult")
]


def _admin(info: Context) -> str:
    info.context.caller.require(Role.ADMIN)
    return info.context.caller.merchant_id


async def admin_program(info: Context) -> AdminProgram:
    """The program in force now, as its JSON document, and every version with its start."""
    merchant_id = _admin(info)

    async def load(pg: PgConnection) -> AdminProgram:
        current = await program_in_force(pg, merchant_id, info.context.now)
        return AdminProgram(
            version=current.version,
            effective_from=current.effective_from,
            document=msgspec.to_builtins(current.program),
            versions=[
                ProgramVersion(version=v, effective_from=since)
                for v, since in await program_history(pg, merchant_id)
            ],
        )

    return await info.context.read(load)


def validate_program(info: Context, document: str) -> ProgramValidation:
    """Check a program document (TOML, as `pointguard program load` takes) without saving it:
    every problem at once, each named by its field."""
    _admin(info)
    try:
        parse_program(_bounded(document))
    except ProgramInvalid as error:
        return ProgramValidation(valid=False, problems=_problems(error))
    return ProgramValidation(valid=True, problems=[])


async def publish_program(
    info: Context, document: str, effective_from: datetime | None = None
) -> PublishResult:
    """Validate a program document and save it as the next version, in force from
    `effectiveFrom` (default: now). Nothing is saved when a problem is found."""
    merchant_id = _admin(info)
    when = effective_from or info.context.now
    try:
        program = parse_program(_bounded(document))
        version = await info.context.write(
            lambda pg: save_program(pg, merchant_id, program, effective_from=when)
        )
    except ProgramInvalid as error:
        return ProgramRejected(code=error.code, message=str(error), problems=_problems(error))
    return ProgramPublished(version=version, effective_from=when)


async def analytics(info: Context, start: datetime, end: datetime) -> JSON:
    """The program's figures for [start, end): members, orders, points issued, redeemed and
    expired, liability, rates (definitions: docs/program.md)."""
    merchant_id = _admin(info)
    if end <= start:
        raise QueryRefused("analytics(end:) must be after start")
    figures = await info.context.read(
        lambda pg: program_analytics(pg, merchant_id, start=start, end=end)
    )
    fields = dataclasses.asdict(figures)
    fields["members_by_tier"] = {str(t): n for t, n in figures.members_by_tier.items()}
    result: Any = msgspec.to_builtins(fields)
    return result  # type: ignore[no-any-return]


async def list_keys(info: Context) -> list[ApiKey]:
    """The shop's API keys, live and revoked (never the keys themselves)."""
    merchant_id = _admin(info)
    listed = await info.context.read(lambda pg: api_keys.list_api_keys(pg, merchant_id))
    return [
        ApiKey(
            name=k.name,
            role=KeyRole(k.role.value),
            created_at=k.created_at,
            revoked_at=k.revoked_at,
        )
        for k in listed
    ]


async def create_api_key(info: Context, role: KeyRole, name: str) -> CreateKeyResult:
    """Make an API key; it is in the answer this once only."""
    merchant_id = _admin(info)
    try:
        key = await info.context.write(
            lambda pg: api_keys.new_api_key(pg, merchant_id, api_keys.KeyRole(role.value), name)
        )
    except MerchantInvalid as error:
        return InvalidInput(code=error.code, message=str(error))
    return CreatedApiKey(name=name, role=role, key=key)


async def revoke_api_key(info: Context, name: str) -> RevokeKeyResult:
    """Revoke the live key `name`: refused by every server within seconds."""
    merchant_id = _admin(info)
    if not await info.context.write(lambda pg: api_keys.revoke_api_key(pg, merchant_id, name)):
        return NotFound(code="not_found", message=f"no live API key named {name!r}")
    return RevokedApiKey(name=name)


async def rotate_webhook_secret(info: Context) -> RotatedSecret:
    """A new webhook secret; the previous one keeps verifying until the next rotation, so the
    storefront can switch without dropping webhooks (and customer tokens signed with the
    previous customer-token secret keep working too)."""
    merchant_id = _admin(info)
    keys = info.context.secret_key
    secret = await info.context.write(lambda pg: rotate_inbound_secret(pg, keys, merchant_id))
    return RotatedSecret(webhook_secret=secret, **derived_secrets(secret))


async def dead_letters(info: Context, kind: DeadLetterKind, first: int = 50) -> list[DeadLetter]:
    """Oldest first: webhooks we gave up applying (`INBOX`), or our deliveries the
    storefront's endpoint never accepted (`OUTBOX`)."""
    merchant_id = _admin(info)
    if not 1 <= first <= MAX_DEAD_LETTERS:
        raise QueryRefused(f"deadLetters(first:) must be 1 to {MAX_DEAD_LETTERS}, not {first}")
    if kind is DeadLetterKind.INBOX:
        rows = await info.context.read(lambda pg: worker.dead_letters(pg, merchant_id, first))
        return [
            DeadLetter(
                id=strawberry.ID(str(r["webhook_id"])),
                event_type=str(r["event_type"]),
                attempts=int(r["attempts"]),  # type: ignore[call-overload]
                last_error=r["last_error"],  # type: ignore[arg-type]
                at=r["received_at"],  # type: ignore[arg-type]
            )
            for r in rows
        ]
    found = await info.context.read(
        lambda pg: deliveries.dead_deliveries(pg, merchant_id, limit=first)
    )
    return [
        DeadLetter(
            id=strawberry.ID(d.webhook_id),
            event_type=d.event_type,
            attempts=d.attempts,
            last_error=d.last_error,
            at=d.created_at,
        )
        for d in found
    ]


async def replay_dead_letters(
    info: Context, kind: DeadLetterKind, ids: list[strawberry.ID] | None = None
) -> Replayed:
    """Queue dead letters again: those of `ids`, or every one of `kind` when `ids` is null."""
    merchant_id = _admin(info)
    now = info.context.now

    async def replay(pg: PgConnection) -> int:
        if kind is DeadLetterKind.INBOX:
            if ids is None:
                return await worker.replay_dead_letters(pg, merchant_id)
            done = [await worker.replay_dead_letter(pg, merchant_id, str(i)) for i in ids]
        else:
            if ids is None:
                return await deliveries.replay_dead_deliveries(pg, merchant_id, now=now)
            done = [
                await deliveries.replay_dead_delivery(pg, merchant_id, str(i), now=now) for i in ids
            ]
        return sum(done)

    return Replayed(replayed=await info.context.write(replay))


async def create_merchant_for_operator(
    info: Context, name: str, endpoint_url: str | None = None
) -> CreateMerchantResult:
    """Register a merchant (operator key only). Its secrets and storefront API key are in this
    answer only: store them now."""
    info.context.caller.require(Role.OPERATOR)
    keys = info.context.secret_key
    try:
        made = await info.context.write(
            lambda pg: create_merchant(pg, keys, name, endpoint_url=endpoint_url)
        )
    except MerchantInvalid as error:
        return InvalidInput(code=error.code, message=str(error))
    return CreatedMerchant(
        merchant_id=strawberry.ID(made.merchant_id),
        name=made.name,
        webhook_secret=made.webhook_secret,
        customer_token_secret=customer_token_secret(made.webhook_secret),
        api_key=made.api_key,
        outbound_public_key=made.outbound_public_key,
        outbound_webhook_secret=made.outbound_webhook_secret,
    )


def _bounded(document: str) -> str:
    if len(document) > MAX_DOCUMENT_CHARS:
        raise QueryRefused(f"a program document has at most {MAX_DOCUMENT_CHARS} characters")
    return document


def _problems(error: ProgramInvalid) -> list[FieldProblem]:
    return [FieldProblem(field=f, message=m) for f, m in error.problems]
