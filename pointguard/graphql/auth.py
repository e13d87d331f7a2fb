"""Who is calling `/graphql`: every request names one merchant through its credential, and
every resolver reads that merchant from here, never from its arguments.

`Authorization: Bearer pgk_…` is an API key (storefront, reviewer or admin, `api_keys.py`);
the installation's operator key (`POINTGUARD_OPERATOR_KEY`) may create merchants and nothing
else; any other bearer value is a customer token (`customer_tokens.py`). Known keys are kept in
memory for `KEY_CACHE_TTL_S`, so a revoked key stops working within that time."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncEngine

from pointguard import db
from pointguard.errors import Forbidden, Unauthorized
from pointguard.graphql.customer_tokens import token_issuer, verify_customer_token
from pointguard.plugin.api_keys import API_KEY_PREFIX, KeyOwner, find_api_key
from pointguard.plugin.credentials import CredentialCache

OPERATOR_MERCHANT = ""  # the operator belongs to no merchant, and so reaches none
KEY_CACHE_TTL_S = 10.0
MAX_CACHED_KEYS = 10_000
BEARER = "bearer "


class Role(StrEnum):
    STOREFRONT = "storefront"
    CUSTOMER = "customer"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    OPERATOR = "operator"  # runs the installation: creates merchants, sees none of their data


@dataclass(frozen=True)
class Caller:
    """A verified caller: its merchant, its role, the member a customer token is for, and the
    name of the API key (for the audit trail)."""

    merchant_id: str
    role: Role
    member_id: str | None = None
    key_name: str | None = None

    @property
    def rate_key(self) -> str:
        """Whose requests count together against the rate limit: a customer across all their
        tokens, or one API key."""
        who = f"member:{self.member_id}" if self.role is Role.CUSTOMER else f"key:{self.key_name}"
        return f"{self.merchant_id}/{who}"

    def require(self, *roles: Role) -> None:
        """Raise `Forbidden` unless the caller has one of `roles`."""
        if self.role not in roles:
            allowed = " or ".join(f"a {role} credential" for role in roles)
            raise Forbidden(f"this operation needs {allowed}; this request has a {self.role} one")


class Authenticator:
    """Turns an `Authorization` header into a `Caller`, or raises `Unauthorized`."""

    def __init__(
        self, engine: AsyncEngine, credentials: CredentialCache, *, operator_key: str | None
    ) -> None:
        self._engine = engine
        self._credentials = credentials
        self._operator_key = operator_key
        self._keys: dict[str, tuple[float, KeyOwner | None]] = {}

    async def caller(self, authorization: str | None, now: datetime) -> Caller:
        if not authorization or not authorization.lower().startswith(BEARER):
            raise Unauthorized(
                "send Authorization: Bearer with the merchant's API key (pgk_…) or a customer token"
            )
        credential = authorization[len(BEARER) :].strip()
        if self._operator_key is not None and hmac.compare_digest(
            credential.encode(), self._operator_key.encode()
        ):
            return Caller(OPERATOR_MERCHANT, Role.OPERATOR, key_name="operator")
        if credential.startswith(API_KEY_PREFIX):
            owner = await self._key_owner(credential)
            if owner is None:
                raise Unauthorized("unknown or revoked API key")
            return Caller(owner.merchant_id, Role(owner.role.value), key_name=owner.name)
        credentials = await self._credentials.load(self._engine, token_issuer(credential))
        if credentials is None:
            raise Unauthorized("the customer token names an unknown merchant")
        member_id = verify_customer_token(credential, credentials, now)
        return Caller(credentials.merchant_id, Role.CUSTOMER, member_id=member_id)

    async def _key_owner(self, api_key: str) -> KeyOwner | None:
        cached = self._keys.get(api_key)
        if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_TTL_S:
            return cached[1]
        async with db.connection(self._engine) as pg:
            owner = await find_api_key(pg, api_key)
        if len(self._keys) >= MAX_CACHED_KEYS:
            self._keys.clear()  # a flood of made-up keys must not grow memory without end
        self._keys[api_key] = (time.monotonic(), owner)
        return owner
