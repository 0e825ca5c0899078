"""The LDM objective library: entropy estimators, latent models, objectives, registry."""
