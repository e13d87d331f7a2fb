"""The merchant's loyalty program: versioned program documents, and a folder per feature, each
with a pure `rules.py` that decides from plain values and a module that loads and stores its
rows. `apply.py` runs every event through them: load → decide → store (docs/program.md)."""
