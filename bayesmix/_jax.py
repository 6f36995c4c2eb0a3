"""Let JAX samplers run chains in parallel on the CPU.

XLA exposes one CPU device unless told otherwise before JAX starts, and numpyro runs chains in
parallel only over devices. This sets ``--xla_force_host_platform_device_count`` (as
``numpyro.set_host_device_count`` does) when JAX has not been imported yet and the user has not
set the flag; it changes nothing else.
"""

from __future__ import annotations

import os
import sys

MIN_HOST_DEVICES = 4  # the default number of chains


def allow_parallel_chains() -> None:
    if "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    count = max(MIN_HOST_DEVICES, os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
