"""The guard's step in the program's pipeline: load → decide → store for a round's
reward-bearing intents, between the program's decisions and the ledger.

`screen_round` records the identity links the round's events carry, loads what the features
read (set-wise), and decides every reward with the hard rules (`rules.py`). The program's
`apply.py` then posts the rewards, held ones as pending with their release held, and
`record_verdicts` stores the decisions with their ledger entries, opens or joins each held
member's review case and returns the events for the storefront (`member.flagged` for a new
case). The guard reads the ledger's and the program's records but writes neither.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

import msgspec

from pointguard.db import PgConnection
from pointguard.fraud.cases import GOOD_STANDING, StorefrontEvent, load_review_standings, open_cases
from pointguard.fraud.features import (
    FEATURE_SCHEMA,
    NEW_ON_OLD_ACCOUNT_KINDS,
    OLD_ACCOUNT_DAYS,
    IntentFeatures,
    new_on_old_account,
    points_in_round,
)
from pointguard.fraud.history import (
    RefereeStart,
    load_first_sightings,
    load_histories,
    load_member_links,
    load_points_median,
    load_referee_starts,
    load_shared_kinds,
    record_points_observations,
)
from pointguard.fraud.identity import LinkKind, digest, identifiers
from pointguard.fraud.links import SeenLink, record_links
from pointguard.fraud.model import GuardModel
from pointguard.fraud.model_decision import decide_with_model
from pointguard.fraud.model_store import ModelCache, learn_reviewed_cases, save_model
from pointguard.fraud.policy import GuardPolicy
from pointguard.fraud.rules import GuardDecision, decide_intent
from pointguard.fraud.signals import Signals

SECONDS_PER_DAY = 86_400

INSERT_DECISIONS = """
INSERT INTO fraud_decisions (merchant_id, intent_key, event_id, member_id, points, source,
    decision, score, decided_by, reasons, features, feature_schema, case_id, ledger_entry_id,
    decided_at, learn_seq)
SELECT $1, d.* FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
    $7::text[], $8::float8[], $9::text[], $10::jsonb[], $11::jsonb[], $12::int[], $13::bigint[],
    $14::bigint[], $15::timestamptz[], $16::bigint[]) AS d
ON CONFLICT (merchant_id, intent_key) DO NOTHING
"""


class DecisionColumns(NamedTuple):
    """`INSERT_DECISIONS`'s parameters, in `$n` order: a column each, a row per intent."""

    merchant_id: str
    intent_keys: list[str]
    event_ids: list[str]
    member_ids: list[str]
    points: list[int]
    sources: list[str]
    decisions: list[str]
    scores: list[float]
    decided_by: list[str]
    reasons: list[str]
    features: list[str]
    feature_schemas: list[int]
    case_ids: list[int | None]
    ledger_entry_ids: list[int | None]
    decided_at: list[datetime]
    learn_seqs: list[int | None]


IdentityKey = Callable[[PgConnection, str], Awaitable[bytes]]


@dataclass
class Guard:
    """The guard as the server configures it: where a merchant's identity key comes from (the
    keyring, through the merchant's credentials; a fixed key in tests), and the process's
    cache of the merchants' models."""

    identity_key: IdentityKey
    models: ModelCache = field(default_factory=ModelCache)
    _keys: dict[str, bytes] = field(default_factory=dict)

    async def key_of(self, pg: PgConnection, merchant_id: str) -> bytes:
        if merchant_id not in self._keys:
            self._keys[merchant_id] = await self.identity_key(pg, merchant_id)
        return self._keys[merchant_id]


@dataclass(frozen=True)
class Reward:
    """A reward-bearing intent of the program, as the guard sees it."""

    key: str  # its ledger idempotency key
    points: int
    source: str  # "earning:order", "referral:referrer", "action:review.published", ...
    earner: str
    release_at: datetime | None  # when the program would release it (None: at once)


@dataclass(frozen=True)
class ScreenedEvent:
    """One event of a round, as the guard sees it: what it earns, who is behind it, and for a
    referee the referrer."""

    event_id: str
    member_id: str
    occurred_at: datetime
    signals: Signals | None
    policy: GuardPolicy
    return_window_days: int
    rewards: Sequence[Reward]
    referrer_id: str | None = None  # the event member's referrer, if they were referred


@dataclass(frozen=True)
class Verdict:
    event: ScreenedEvent
    reward: Reward
    decision: GuardDecision
    features: IntentFeatures
    learn_seq: int | None = None  # its place in the model's stream, if the model saw it

    @property
    def release_at(self) -> datetime:
        """When a held reward's points are due, should a reviewer clear them: when the program
        would have released them, or at once."""
        return self.reward.release_at or self.event.occurred_at


async def screen_round(
    pg: PgConnection, merchant_id: str, guard: Guard, round_: Sequence[ScreenedEvent]
) -> list[Verdict]:
    """Decide every reward of the round (see the module)."""
    if not round_:  # every event of the round was recorded before (a paid order seen again)
        return []
    key = await guard.key_of(pg, merchant_id)
    # First the merchant's model, whose lock makes rounds of one merchant take turns: each
    # round's features then see every earlier round, in the order the model learns them.
    model = await guard.models.current(pg, merchant_id, key)
    seen_before = model.seen
    await learn_reviewed_cases(pg, merchant_id, model)
    ruled = await _ruled(pg, merchant_id, key, round_)
    verdicts = [_through_model(model, verdict) for verdict in ruled]
    last_at = max(item.occurred_at for item in round_)
    await save_model(pg, merchant_id, key, model, seen_before, last_at)
    return verdicts


async def _ruled(
    pg: PgConnection, merchant_id: str, key: bytes, round_: Sequence[ScreenedEvent]
) -> list[Verdict]:
    """Record the round's identity links, load the features of its rewards and decide each
    by the hard rules."""
    seen = [
        SeenLink(found.kind, digest(key, found), item.member_id, item.occurred_at)
        for item in round_
        for found in identifiers(item.signals)
    ]
    await record_links(pg, merchant_id, seen)
    wanted = [(item, reward) for item in round_ for reward in item.rewards]
    if not wanted:
        return []
    earners = sorted({reward.earner for _, reward in wanted})
    histories = await load_histories(
        pg,
        merchant_id,
        sorted(
            {
                (
                    reward.earner,
                    item.occurred_at,
                    item.occurred_at - timedelta(days=item.return_window_days),
                )
                for item, reward in wanted
            }
        ),
    )
    pairs = sorted({pair for item, r in wanted if (pair := _referral_pair(item, r))})
    links = await load_member_links(pg, merchant_id, [*earners, *(b for _, b in pairs)])
    shared_by_pair = await load_shared_kinds(pg, merchant_id, pairs)
    referees = await load_referee_starts(
        pg, merchant_id, sorted({(item.member_id, item.occurred_at) for item, _ in wanted})
    )
    # Only an old account can have a new device or address on it: young ones skip the read.
    old = {
        member
        for (member, at), history in histories.items()
        if history.first_seen_at is not None
        and at - history.first_seen_at > timedelta(days=OLD_ACCOUNT_DAYS)
    }
    sightings = await load_first_sightings(
        pg,
        merchant_id,
        [link for link in seen if link.kind in NEW_ON_OLD_ACCOUNT_KINDS and link.member_id in old],
    )
    earned = points_in_round((r.earner, item.occurred_at, r.points) for item, r in wanted)
    points_24h = {key: histories[key].decided_points_24h + points for key, points in earned.items()}
    median = await load_points_median(pg, merchant_id) or statistics.median(points_24h.values())
    await record_points_observations(pg, merchant_id, median, list(points_24h.values()))
    standings = await load_review_standings(pg, merchant_id, earners)
    verdicts = []
    for item, reward in wanted:
        pair = _referral_pair(item, reward)
        referral_shared = shared_by_pair[pair] if pair is not None else frozenset()
        history = histories[(reward.earner, item.occurred_at)]
        first_seen = history.first_seen_at or item.occurred_at
        age_days = max(0.0, (item.occurred_at - first_seen).total_seconds()) / SECONDS_PER_DAY
        own = reward.earner == item.member_id  # the event's device and address are the earner's
        referee = referees.get((item.member_id, item.occurred_at), RefereeStart())
        earned_24h = points_24h[(reward.earner, item.occurred_at)]
        features = IntentFeatures(
            source=reward.source,
            points=reward.points,
            account_age_days=age_days,
            history=history,
            sharing=links[reward.earner].sharing,
            referral_shared=referral_shared,
            open_case=standings.get(reward.earner, GOOD_STANDING).open_case_id is not None,
            frozen=standings.get(reward.earner, GOOD_STANDING).frozen,
            points_24h=earned_24h,
            points_24h_over_median=earned_24h / median,
            referee_hours_to_first_order=referee.hours_to_first_order,
            first_order_over_minimum=referee.first_order_over_minimum,
            new_device_on_old_account=own
            and new_on_old_account(
                sightings.get((item.member_id, LinkKind.DEVICE)), item.occurred_at, age_days
            ),
            new_address_on_old_account=own
            and new_on_old_account(
                sightings.get((item.member_id, LinkKind.ADDRESS)), item.occurred_at, age_days
            ),
            component_members=links[reward.earner].component_members,
            disposable_email=LinkKind.DISPOSABLE_EMAIL in links[reward.earner].sharing,
            referee_disposable_email=pair is not None
            and LinkKind.DISPOSABLE_EMAIL in links[pair[1]].sharing,
        )
        verdicts.append(Verdict(item, reward, decide_intent(item.policy, features), features))
    return verdicts


def _through_model(model: GuardModel, ruled: Verdict) -> Verdict:
    """The model's part in a decision (`model_decision.py`)."""
    decision, learn_seq = decide_with_model(
        ruled.event.policy, ruled.decision, model, ruled.reward.key, ruled.features
    )
    return replace(ruled, decision=decision, learn_seq=learn_seq)


def _referral_pair(item: ScreenedEvent, reward: Reward) -> tuple[str, str] | None:
    """(referrer, referee) of a referral reward: the referee is the event's member."""
    if not reward.source.startswith("referral:"):
        return None
    referee = item.member_id
    referrer = reward.earner if reward.earner != referee else item.referrer_id
    if referrer is None or referrer == referee:
        return None
    return referrer, referee


async def record_verdicts(
    pg: PgConnection,
    merchant_id: str,
    verdicts: Sequence[Verdict],
    entry_ids: Mapping[str, int],
) -> list[StorefrontEvent]:
    """Store the decisions with the ledger entries that posted them (`entry_ids` by the
    rewards' keys), and open or join the held members' cases."""
    if not verdicts:
        return []
    held = [v for v in verdicts if v.decision.held]
    cases, events = await open_cases(
        pg, merchant_id, sorted({(v.reward.earner, v.event.occurred_at) for v in held})
    )
    columns = DecisionColumns(
        merchant_id=merchant_id,
        intent_keys=[v.reward.key for v in verdicts],
        event_ids=[v.event.event_id for v in verdicts],
        member_ids=[v.reward.earner for v in verdicts],
        points=[v.reward.points for v in verdicts],
        sources=[v.reward.source for v in verdicts],
        decisions=[v.decision.verdict.value for v in verdicts],
        scores=[v.decision.score for v in verdicts],
        decided_by=[v.decision.decided_by for v in verdicts],
        reasons=[msgspec.json.encode(list(v.decision.reasons)).decode() for v in verdicts],
        features=[v.features.to_json() for v in verdicts],
        feature_schemas=[FEATURE_SCHEMA] * len(verdicts),
        case_ids=[cases.get(v.reward.earner) if v.decision.held else None for v in verdicts],
        ledger_entry_ids=[entry_ids.get(v.reward.key) for v in verdicts],
        decided_at=[v.event.occurred_at for v in verdicts],
        learn_seqs=[v.learn_seq for v in verdicts],
    )
    await pg.execute(INSERT_DECISIONS, *columns)
    return events
