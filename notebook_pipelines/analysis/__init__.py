"""The analysis layer: what-ifs, Monte Carlo, timing analysis of traces (critical path, slack,
concurrency, summaries, many runs) — functions of plans and traces."""
