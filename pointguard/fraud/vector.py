"""The model's view of an intent: one flat dict of numbers, with the same keys for every intent.

Why each choice:
- The keys come from the feature structs themselves (every int, float and bool field of
  `IntentFeatures` and `MemberHistory`, a count per kind of shared identifier, a flag per kind
  the referrer and referee share, a flag per kind of source), so a feature added to the
  structs reaches the model without a second list to keep in step.
- Every key is always present: HalfSpaceTrees only splits on the keys of the first event it
  learns, so a key missing then would be ignored for ever.
- Counts and amounts are squashed with `log1p` and clipped: one extreme value (a 10,000-point
  order) would otherwise stretch the MinMaxScaler's range and press every later value to 0.
- `open_case` and `frozen` are left out: an intent with either is held by a hard rule and never
  reaches the model.

`VECTOR_SCHEMA_HASH` names this layout; a model snapshot made under another one is rebuilt from
the stored features rather than unpickled.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgspec

from pointguard.fraud.features import FEATURE_SCHEMA, IntentFeatures, MemberHistory
from pointguard.fraud.identity import LinkKind

VECTOR_LAYOUT = 1  # bump when the squashing or the keys change other than through the structs
SOURCE_KINDS = ("earning", "promotion", "referral", "action", "challenge")
NOT_MODEL_INPUT = frozenset({"open_case", "frozen"})
SQUASH_LIMIT = 20.0  # log1p(4.8e8): beyond any honest count or amount


def _numeric_fields(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(
        field.name
        for field in msgspec.structs.fields(struct)
        if field.type in (int, float, bool) and field.name not in NOT_MODEL_INPUT
    )


INTENT_FIELDS = _numeric_fields(IntentFeatures)
HISTORY_KEYS = tuple((f"history.{name}", name) for name in _numeric_fields(MemberHistory))
LINK_KEYS = tuple(
    (kind, f"sharing.{kind.value}", f"referral_shared.{kind.value}") for kind in LinkKind
)
SOURCE_KEYS = tuple((kind, f"source.{kind}") for kind in SOURCE_KINDS)


def _squash(value: float) -> float:
    """Signed log1p, clipped: counts and amounts on one gentle scale."""
    if value >= 0:
        return min(SQUASH_LIMIT, math.log1p(value))
    return max(-SQUASH_LIMIT, -math.log1p(-value))


def feature_vector(features: IntentFeatures) -> dict[str, float]:
    """The model's input for one intent (see the module). On the hot path: plain loops over
    key tables built once."""
    vector = {name: _squash(getattr(features, name)) for name in INTENT_FIELDS}
    history = features.history
    for key, name in HISTORY_KEYS:
        vector[key] = _squash(getattr(history, name))
    sharing, shared = features.sharing, features.referral_shared
    for kind, sharing_key, shared_key in LINK_KEYS:
        vector[sharing_key] = _squash(sharing.get(kind, 0))
        vector[shared_key] = 1.0 if kind in shared else 0.0
    source_kind = features.source.partition(":")[0]
    for kind_name, key in SOURCE_KEYS:
        vector[key] = 1.0 if source_kind == kind_name else 0.0
    return vector


def raw_value(features: IntentFeatures, key: str) -> Any:
    """The unsquashed value behind a vector key, for a reviewer's reasons."""
    group, _, name = key.partition(".")
    if not name:
        return getattr(features, key)
    if group == "history":
        return getattr(features.history, name)
    if group == "sharing":
        return features.sharing.get(LinkKind(name), 0)
    if group == "referral_shared":
        return LinkKind(name) in features.referral_shared
    return features.source.partition(":")[0] == name


def _schema_hash() -> str:
    keys = sorted(
        feature_vector(
            IntentFeatures(source="", points=0, account_age_days=0.0, history=MemberHistory())
        )
    )
    layout = msgspec.json.encode(
        {"feature_schema": FEATURE_SCHEMA, "layout": VECTOR_LAYOUT, "keys": keys}
    )
    return hashlib.sha256(layout).hexdigest()


VECTOR_SCHEMA_HASH = _schema_hash()
