"""The pipeline layer: stages, config, rules helpers, tracking, DVC, files."""
