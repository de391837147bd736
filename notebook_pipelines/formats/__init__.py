"""File formats: Harness v0 pipeline YAML in and out."""
