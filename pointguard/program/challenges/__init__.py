"""Challenges and badges: progress, completion, revocation after returns."""
