"""The fraud guard: identity links, features, hard rules (and, to come, River models) that
decide clear-or-hold on every reward-bearing intent before its points can be released, and the
review cases where risk reviewers decide what was held. Below the program: it imports nothing
of ours but the ledger (read) and `db` (docs/fraud.md)."""
