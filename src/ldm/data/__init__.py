"""Data: generators (videos, ICA sources) and dataset acquisition/loading."""
