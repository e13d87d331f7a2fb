"""Tiers: which tier a member holds, its reviews and grace, and the daily review."""
