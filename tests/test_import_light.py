"""``import bayesmix`` is light and leaves the process as it was (issue 19): no PyMC, JAX or ArviZ
until they are used, no environment variable set, no garbage-collector freeze. JAX is configured
when a sampler first runs."""

import json
import subprocess
import sys

HEAVY = ("pymc", "pytensor", "jax", "numpyro", "arviz", "matplotlib", "xarray", "scipy.stats")

SCRIPT = f"""
import gc, json, os, sys
before = dict(os.environ)
import bayesmix
imported = sorted(m for m in {HEAVY!r} if m in sys.modules)
changed = sorted(k for k, v in os.environ.items() if before.get(k) != v)
frozen = gc.get_freeze_count()
names = [bayesmix.Model.__name__, bayesmix.fixef.__name__, bayesmix.plots.__name__, bayesmix.load.__name__]
print(json.dumps({{"imported": imported, "changed": changed, "frozen": frozen, "names": names}}))
"""


def test_import_changes_nothing_and_imports_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] == [] and result["changed"] == [] and result["frozen"] == 0
    assert result["names"] == ["Model", "fixef", "bayesmix.plots", "load"]


def test_the_first_sampler_configures_jax():
    script = (
        "import os, bayesmix\n"
        "assert 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', '')\n"
        "m = bayesmix.Model('Reaction ~ Days + (1 | Subject)', bayesmix.load_dataset('sleepstudy'))\n"
        "m.sample(chains=2, draws=50, tune=50, progressbar=False, random_seed=1)\n"
        "import jax\n"
        "print(jax.local_device_count(), 'xla_force_host_platform_device_count' in os.environ['XLA_FLAGS'])\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    devices, flagged = out.stdout.split()[-2:]
    assert int(devices) >= 2 and flagged == "True"


EXACT_PATH = f"""
import json, sys
import bayesmix
data = bayesmix.load_dataset("sleepstudy")
fit = bayesmix.Model("Reaction ~ Days + (Days | Subject)", data).fit("reml")
fit.summary(); fit.to_dict(); fit.predict(data.head())
glmm = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", bayesmix.load_dataset("cbpp"),
                      family="binomial").fit("laplace")
glmm.summary(); bayesmix.fixef(fit); bayesmix.anova(fit, fit)
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_an_exact_fit_never_imports_the_samplers():
    """Issue 20: Model(...), fit(), its tables, predictions and anova leave PyMC, PyTensor, JAX and
    ArviZ unloaded (they load when a sampler, a plot or a file needs them)."""
    out = subprocess.run([sys.executable, "-c", EXACT_PATH], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
