"""Typed errors. Every failure a caller can act on has a class and a stable `code`.

The HTTP and GraphQL layers map these to responses in one place each; code below them raises,
never formats responses.
"""

from __future__ import annotations


class PointGuardError(Exception):
    """Base of every error PointGuard raises on purpose."""

    code = "pointguard_error"


class LedgerError(PointGuardError):
    code = "ledger_error"


class InvalidEntry(LedgerError):
    """An entry or batch that can never be posted as given (fix the request, don't retry)."""

    code = "invalid_entry"


class UnbalancedEntry(InvalidEntry):
    code = "unbalanced_entry"


class TooFewPostings(InvalidEntry):
    code = "too_few_postings"


class InvalidAmount(InvalidEntry):
    code = "invalid_amount"


class BatchTooLarge(InvalidEntry):
    code = "batch_too_large"


class CrossMerchantPosting(InvalidEntry):
    code = "cross_merchant_posting"


class UnknownAccount(InvalidEntry):
    code = "unknown_account"


class InvalidReference(InvalidEntry):
    """The entry names an earlier entry (earn, reservation) that does not fit this use."""

    code = "invalid_reference"


class RedemptionCompleted(InvalidReference):
    """A cancellation of a redemption whose order was paid (it was completed)."""

    code = "redemption_completed"


class InsufficientPoints(LedgerError):
    """The member does not hold enough points for this spend."""

    code = "insufficient_points"

    def __init__(self, message: str, *, member_id: str, available_points: int) -> None:
        super().__init__(message)
        self.member_id = member_id
        self.available_points = available_points


class IdempotencyConflict(LedgerError):
    """An entry posted under an idempotency key that already names a different entry (another
    kind, other accounts or other amounts). A repeat returns the first entry only when it is
    the same entry; anything else under a used key is a bug or an attack, never a replay."""

    code = "idempotency_conflict"

    def __init__(self, message: str, *, idempotency_key: str) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


class ReservationLapsed(LedgerError):
    """A capture of a reservation that was voided (cancelled, or timed out past the capture
    grace) when the member's available points no longer cover it: the points cannot be taken,
    and the caller must not treat the checkout as paid in points."""

    code = "reservation_lapsed"

    def __init__(
        self, message: str, *, hold_id: int, member_id: str, available_points: int
    ) -> None:
        super().__init__(message)
        self.hold_id = hold_id
        self.member_id = member_id
        self.available_points = available_points


class ConcurrentChange(LedgerError):
    """State read before the transaction changed under it; the transaction runner retries."""

    code = "concurrent_change"


class ProgramInvalid(PointGuardError):
    """A program document that cannot be saved; `problems` pairs each field with what is wrong."""

    code = "program_invalid"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = problems


class ProgramNotFound(PointGuardError):
    code = "program_not_found"


class UnknownOrder(PointGuardError):
    """A refund or cancellation of an order the program never saw paid."""

    code = "unknown_order"


class RewardUnavailable(PointGuardError):
    """A reward the member cannot redeem now; `reason` says why (`rewards.Reason` values)."""

    code = "reward_unavailable"

    def __init__(self, message: str, *, reward_id: str, reason: str) -> None:
        super().__init__(message)
        self.reward_id = reward_id
        self.reason = reason


class LeaderboardDisabled(PointGuardError):
    """The merchant's program has no leaderboard to join."""

    code = "leaderboard_disabled"


class ReferralsDisabled(PointGuardError):
    """The merchant's program has no referrals: a referral code would earn nobody anything."""

    code = "referrals_disabled"


class FraudError(PointGuardError):
    code = "fraud_error"


class MemberUnderReview(FraudError):
    """The member has an open review case (or was frozen): points cannot be spent until a
    reviewer decides it."""

    code = "member_under_review"

    def __init__(self, message: str, *, member_id: str, case_id: int | None) -> None:
        super().__init__(message)
        self.member_id = member_id
        self.case_id = case_id


class UnknownCase(FraudError):
    code = "unknown_case"


class CaseAlreadyDecided(FraudError):
    """A review case decided before (perhaps by another reviewer a moment ago)."""

    code = "case_already_decided"

    def __init__(self, message: str, *, case_id: int, status: str) -> None:
        super().__init__(message)
        self.case_id = case_id
        self.status = status


class ChanceUnavailable(PointGuardError):
    """A lottery entry or draw, scratch card or surprise bonus that cannot go ahead now;
    `reason` says why (`program.prizes.Reason` values)."""

    code = "chance_unavailable"

    def __init__(self, message: str, *, chance_id: str, reason: str) -> None:
        super().__init__(message)
        self.chance_id = chance_id
        self.reason = reason


class SeedMismatch(PointGuardError):
    """A revealed draw seed whose SHA-256 is not the hash published before entries closed:
    the draw cannot be trusted."""

    code = "seed_mismatch"


class InvalidPeriod(PointGuardError):
    """A reporting period that is not a period: naive times, or a start not before the end."""

    code = "invalid_period"


class EmbeddedServerInUse(PointGuardError):
    """Stopping the embedded PostgreSQL would pull it from under running PointGuard processes
    (a server, workers); the message names them."""

    code = "embedded_server_in_use"


class EmbeddedServerError(PointGuardError):
    """`pg_ctl` could not stop the embedded PostgreSQL; the message has its own words."""

    code = "embedded_server_error"


class UnknownMerchant(PointGuardError):
    code = "unknown_merchant"


class PayloadTooLarge(PointGuardError):
    code = "payload_too_large"


class InvalidPayload(PointGuardError):
    """A webhook body that is not JSON, or not the event it says it is; names the field."""

    code = "invalid_payload"

    def __init__(self, message: str, *, field: str = "$", code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        if code is not None:
            self.code = code


class TopicMismatch(InvalidPayload):
    """A signed body sent under a topic it is not (`orders/paid` for an unpaid order): the
    topic header is not signed, so the body must show what the topic claims."""

    code = "topic_mismatch"


class BodyReadTimeout(PointGuardError):
    """A request body not received in full within the read deadline: a slow or stalled
    sender, who would otherwise hold a connection and a task as long as they like."""

    code = "request_timeout"


class WebhookRejected(PointGuardError):
    """An inbound webhook whose signature headers do not prove it came from the sender now;
    answered 401 so the sender sees the rejection (and retries only if it can fix it)."""

    code = "webhook_rejected"


class MissingSignature(WebhookRejected):
    """A required signature header (id, timestamp or signature) is absent or empty."""

    code = "missing_signature"


class StaleTimestamp(WebhookRejected):
    """The signed timestamp is not a whole number of seconds, or lies outside the tolerance
    around now (too old: a possible replay; in the future: a skewed or forged clock)."""

    code = "stale_timestamp"


class BadSignature(WebhookRejected):
    """No signature in the header matches the content under any of the merchant's keys."""

    code = "bad_signature"


class UnsupportedAlgorithm(WebhookRejected):
    """A JWS signed with an algorithm other than RS256. Refused before any key is looked up,
    so `none`, or an HMAC keyed with the public key, never reaches verification."""

    code = "unsupported_algorithm"


class MissingKeyId(WebhookRejected):
    """A JWS without a `kid`: we verify against one named key of the JWKS, never try them all."""

    code = "missing_key_id"


class UnknownKeyId(WebhookRejected):
    """A JWS naming a key that the storefront's JWKS does not hold, even fetched again."""

    code = "unknown_key_id"


class EventMismatch(WebhookRejected):
    """The unsigned event header names another event than the signed body does: a signed body
    replayed under another event's name."""

    code = "event_mismatch"


class InternalError(PointGuardError):
    """A failure nobody planned for (a bug). Answered 500 in the same JSON as every refusal and
    logged with its traceback and the request's webhook id; the connection stays usable."""

    code = "internal_error"


class DatabaseUnavailable(PointGuardError):
    """The database could not do the work now; nothing was decided, so retry later."""

    code = "database_unavailable"


class KeySetUnavailable(PointGuardError):
    """The storefront's JWKS cannot be fetched or read now, so a webhook cannot be verified
    either way; answered 503 so that the sender retries later instead of giving up."""

    code = "jwks_unavailable"


class KeySetNotConfigured(KeySetUnavailable):
    """The merchant has no JWKS URL yet (`pointguard merchant set-jwks`)."""

    code = "jwks_not_configured"


class SecretKeyInvalid(PointGuardError):
    """The AES-GCM key for credentials at rest (POINTGUARD_SECRET_KEY or the key file) is not
    the base64 of 32 bytes; the message says where it came from, never the key itself."""

    code = "secret_key_invalid"


class CredentialUnreadable(PointGuardError):
    """A stored credential that does not decrypt under this key for this merchant and kind:
    the wrong key, a tampered value, or a value copied from another merchant or kind."""

    code = "credential_unreadable"


class MerchantInvalid(PointGuardError):
    """A merchant name, id or endpoint URL that cannot be used; the message says which."""

    code = "merchant_invalid"


class MerchantExists(PointGuardError):
    code = "merchant_exists"


class Unauthorized(PointGuardError):
    """A request without the right `Authorization: Bearer` credential: to `/graphql` (an API
    key or a customer token), or to `/metrics` when it has a token set."""

    code = "unauthorized"


class Forbidden(PointGuardError):
    """A GraphQL caller asking for what its role may not do (a customer token calling a
    checkout mutation, a reviewer key publishing a program)."""

    code = "forbidden"


class NotFound(PointGuardError):
    """A member, redemption or case the merchant does not have. Another merchant's id answers
    exactly so: a credential learns nothing about other merchants."""

    code = "not_found"


class QueryRefused(PointGuardError):
    """A GraphQL request over a limit (body size, page size, rate): nothing was run."""

    code = "query_refused"


class RateLimited(QueryRefused):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OutboundRequestFailed(PointGuardError):
    """A request of ours (a delivery to a merchant's endpoint, a storefront's JWKS fetch) that
    got no usable answer; the message says why, for the operator's logs."""

    code = "outbound_request_failed"


class AddressRefused(OutboundRequestFailed):
    """The URL's host is, or resolves to, an address we never send to (private, loopback,
    link-local, multicast, reserved, unspecified): refused before any connection is opened, so
    a URL cannot turn PointGuard into a probe of its own network."""

    code = "address_refused"


class DeadlineExceeded(OutboundRequestFailed):
    """The peer did not answer in full within the request's overall deadline (a slow or
    trickling peer cannot hold a request for longer by sending a byte now and then)."""

    code = "deadline_exceeded"
