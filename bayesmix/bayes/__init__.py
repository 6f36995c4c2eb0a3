"""The Bayesian engine's models: priors, the PyMC graph (full and collapsed), the built model."""
