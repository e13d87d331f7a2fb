"""Rewards: the catalogue at checkout, redemption on the ledger, suggestions."""
