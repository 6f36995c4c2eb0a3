"""Running NUTS: the PyMC/nutpie/numpyro drivers, compiled-program cache, warmup, convergence, summary."""
