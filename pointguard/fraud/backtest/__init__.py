"""The backtest: a labelled event stream replayed through the program and the fraud guard on a
scratch merchant and a simulated clock, and the guard's quality measured against the labels.

- `stream`: the labelled lines, decoded as the server decodes webhooks (pure);
- `program`: the program a backtest runs by default, one the simulator's attacks earn under;
- `replay`: the stream applied in time order, the upkeep and the checkouts at their moments;
- `reviewers`: the simulated risk team, deciding each case a set time after it opened by the
  labels;
- `metrics`: ROC and precision-recall areas, precision at an alert budget, shares (pure);
- `report`: the figures of one replay, as one JSON-ready mapping and in words.

docs/fraud.md#backtest says how to run it and what each figure means.
"""
