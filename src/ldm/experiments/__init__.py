"""One package per experiment of the paper (glue: stages, settings, figures)."""
