"""The fraud guard: identity links, features, River anomaly models and hard rules that decide
clear-or-hold before pending points are released, and review cases. Arrives with the fraud issue."""
