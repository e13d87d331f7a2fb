"""Chance rewards: the lottery, scratch cards and surprise bonuses, with their budgets."""
