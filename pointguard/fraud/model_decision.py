"""The model's part in a decision, after the hard rules. Pure.

- A hard rule that fired keeps its decision; the score says 1.0, and the model never sees the
  intent (neither learns it nor counts its score), so an attacker held by the rules cannot
  teach the model anything.
- Otherwise the model scores the intent: among the `model_alert_percent` strangest, once warm,
  it is held (`decided_by = "model"`) with what makes it stand out as the reasons; otherwise
  cleared. Either way the model counts its score, and learns it if it was cleared.
- A program with `model = false` leaves the rules' decisions as they are (the rules-only
  baseline of `bench/fraud_quality.py`), and the model neither scores nor learns.
- A program with the guard disabled clears what the model would hold, keeping the reasons (as
  for the rules): the model then learns everything the rules let through.
"""

from __future__ import annotations

from dataclasses import replace

from pointguard.fraud.features import IntentFeatures
from pointguard.fraud.model import GuardModel
from pointguard.fraud.policy import GuardPolicy
from pointguard.fraud.rules import (
    GUARD_DISABLED,
    HOLD_SCORE,
    RULES_CLEARED,
    GuardDecision,
    Verdict,
)
from pointguard.fraud.vector import feature_vector, raw_value

MODEL = "model"
REASONS = 3


def decide_with_model(
    policy: GuardPolicy,
    ruled: GuardDecision,
    model: GuardModel,
    key: str,
    features: IntentFeatures,
) -> tuple[GuardDecision, int | None]:
    """The decision, and the intent's `learn_seq` if the model saw it (see the module)."""
    if not policy.model:
        return ruled, None
    if ruled.decided_by != RULES_CLEARED:
        return replace(ruled, score=HOLD_SCORE), None
    vector = feature_vector(features)
    assessed = model.assess(vector)
    score = assessed.score
    alert = model.is_alert(
        score, alert_rate=policy.model_alert_percent / 100, warmup=policy.model_warmup
    )
    if alert:
        reasons = tuple(
            unusual(key_name, raw_value(features, key_name))
            for key_name in model.strongest(vector, assessed, REASONS)
        )
        if policy.enabled:
            decision = GuardDecision(Verdict.HOLD, score, MODEL, reasons)
        else:
            decision = GuardDecision(Verdict.CLEAR, score, GUARD_DISABLED, reasons)
    else:
        warm = model.seen >= policy.model_warmup
        decision = GuardDecision(Verdict.CLEAR, score, MODEL if warm else RULES_CLEARED, ())
    return decision, model.observe(key, vector, assessed, cleared=not decision.held)


def unusual(key: str, value: object) -> str:
    """A reason in words: what stands out, and its value."""
    name = key.replace("history.", "").replace("_", " ").replace(".", " ")
    if isinstance(value, bool):
        return f"unusual for this shop: {name}"
    if isinstance(value, float):
        value = round(value, 1)
    return f"unusual for this shop: {name} {value}"
