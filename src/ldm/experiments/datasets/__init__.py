"""Dataset acquisition as pipeline stages (issue 8): glue between workflow/rules/datasets.smk and ldm.data."""
