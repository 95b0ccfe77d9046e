"""Models, their predictions and scores: metrics, intervals, trials, backtests, training."""
