"""File formats: Harness v0 pipeline YAML in and out; traces as CSV/Parquet and Perfetto JSON."""
