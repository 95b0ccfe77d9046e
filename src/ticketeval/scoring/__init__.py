"""Models, their predictions and scores: metrics, intervals, trials, backtests, training."""

# The reference heuristic's `--model` name, and the champion when no model is given. Here, in
# the package's light `__init__`, so the CLI can show it without importing pandas.
HEURISTIC = "heuristic"
