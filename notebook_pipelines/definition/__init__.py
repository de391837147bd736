"""The definition layer: the model (and builder), validation, expressions and references, the plan.

Plain data and pure functions; imports nothing above it (no engine, no front-end).
"""
