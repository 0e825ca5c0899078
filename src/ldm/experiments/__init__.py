"""Pipeline stages of each experiment of the paper (one module per experiment family)."""
