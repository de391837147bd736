"""The analysis layer: what-ifs, Monte Carlo, critical path — functions of plans and traces."""
