"""Image SSL as latent distribution matching: the Table 2 / A1 grid, Fig. 3 and Fig. A2 (experiment ``images``)."""
