"""Let JAX samplers run chains in parallel on the CPU, and keep their compilations.

XLA exposes one CPU device unless told otherwise before JAX starts, and numpyro runs chains in
parallel only over devices. This sets ``--xla_force_host_platform_device_count`` (as
``numpyro.set_host_device_count`` does) when JAX has not been imported yet and the user has not
set the flag. It also turns on JAX's persistent compilation cache (in ~/.cache/bayesmix/jax,
unless the user chose a cache): compilation is most of a small model's wait, and a second run of
the same model then skips it. Settings the user made are never overridden.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MIN_HOST_DEVICES = 4  # the default number of chains


def configure_jax() -> None:
    if "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = max(MIN_HOST_DEVICES, os.cpu_count() or 1)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "bayesmix" / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
