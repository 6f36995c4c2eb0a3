"""NUTS through PyMC's samplers, convergence diagnostics, and the warnings users need.

Samplers: ``"pymc"`` (PyTensor's C backend), ``"nutpie"`` (numba), ``"numpyro"`` and
``"blackjax"`` (JAX). ``"auto"`` takes the fastest one installed, end to end with compilation:
numpyro, then nutpie, then pymc. Every sampler is seeded from ``random_seed``, and the same seed
gives the same draws for the same sampler and package versions.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm

from bayesmix.errors import (
    BayesmixError,
    DivergenceWarning,
    LowESSWarning,
    RhatWarning,
    TreeDepthWarning,
    did_you_mean,
)

SAMPLERS = ("auto", "pymc", "nutpie", "numpyro", "blackjax")
_REQUIRES = {"nutpie": ("nutpie",), "numpyro": ("jax", "numpyro"), "blackjax": ("jax", "blackjax")}
RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100
MAX_TREEDEPTH_SHARE = 0.01


def _installed(sampler: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in _REQUIRES.get(sampler, ()))


def resolve_sampler(name: str) -> str:
    """The concrete sampler for ``name``; BayesmixError when unknown or not installed."""
    if name not in SAMPLERS:
        raise BayesmixError(f"Unknown sampler '{name}'.{did_you_mean(name, SAMPLERS)} Samplers: {', '.join(SAMPLERS)}.")
    if name == "auto":
        return next(s for s in ("numpyro", "nutpie", "pymc") if _installed(s))
    if not _installed(name):
        extra = "nutpie" if name == "nutpie" else "jax"
        raise BayesmixError(
            f"sampler='{name}' needs {' and '.join(_REQUIRES[name])}, which are not installed. "
            f"Install them with: pip install 'bayesmix[{extra}]', or use sampler='pymc'."
        )
    return name


def numpyro_chain_method(chains: int) -> str:
    """``parallel`` (one XLA device per chain) when enough devices exist, else ``sequential``.

    Measured here: ``vectorized`` was the slowest (every chain waits for the longest trajectory).
    """
    import jax

    return "parallel" if jax.local_device_count() >= chains else "sequential"


def seed_from(random_seed) -> int:
    """The integer seed of a run: ``random_seed`` checked, or a fresh one when it is None."""
    if random_seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_seed, (bool, np.bool_)) or not isinstance(random_seed, (int, np.integer)) or random_seed < 0:
        raise BayesmixError(f"random_seed must be a non-negative integer or None, not {random_seed!r}.")
    return int(random_seed)


def check_counts(**counts) -> None:
    """BayesmixError unless each count (``draws``, ``chains`` >= 1; ``tune`` >= 0) is a whole number."""
    for name, value in counts.items():
        low = 0 if name == "tune" else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise BayesmixError(f"{name} must be an integer >= {low}, not {value!r}.")


def run_nuts(
    model: pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    random_seed,
    sampler: str,
    progressbar: bool,
    target_accept: float,
    log_likelihood: bool = True,
) -> az.InferenceData:
    """Sample ``model`` with NUTS; the InferenceData holds posterior, sample_stats,
    observed_data and the pointwise log_likelihood. Its posterior attrs record the sampler and seed."""
    check_counts(draws=draws, tune=tune, chains=chains)
    if not 0.5 <= target_accept < 1:
        raise BayesmixError(f"target_accept must be in [0.5, 1), not {target_accept!r}.")
    concrete = resolve_sampler(sampler)
    seed = seed_from(random_seed)
    kwargs = dict(
        draws=int(draws),
        tune=int(tune),
        chains=int(chains),
        random_seed=seed,
        model=model,
        progressbar=progressbar,
        target_accept=target_accept,
        idata_kwargs={"log_likelihood": log_likelihood},
        compute_convergence_checks=False,
    )
    if concrete == "pymc":
        kwargs["cores"] = 1 if chains == 1 else None
    else:
        kwargs["nuts_sampler"] = concrete
    if concrete == "numpyro":
        kwargs["nuts_sampler_kwargs"] = {"chain_method": numpyro_chain_method(chains)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        idata = pm.sample(**kwargs)
    if log_likelihood and "log_likelihood" not in idata.groups():
        pm.compute_log_likelihood(idata, model=model, progressbar=False)
    idata.posterior.attrs.update({"bayesmix_sampler": concrete, "bayesmix_seed": seed, "tuning_steps": int(tune)})
    return idata


@dataclass(frozen=True)
class Diagnostics:
    """Convergence summary of a NUTS run (over every sampled and derived parameter)."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    treedepth_share: float
    chains: int
    draws: int

    @property
    def converged(self) -> bool:
        return self.divergences == 0 and self.max_rhat <= RHAT_LIMIT

    def messages(self) -> list[tuple[type, str]]:
        """(warning class, text) for every problem found."""
        out = []
        total = self.chains * self.draws
        if self.divergences:
            out.append(
                (
                    DivergenceWarning,
                    f"{self.divergences} of {total} draws were divergent transitions. Raise target_accept "
                    "(e.g. 0.95) or reparameterise; estimates may be biased.",
                )
            )
        if self.chains > 1 and self.max_rhat > RHAT_LIMIT:
            out.append(
                (
                    RhatWarning,
                    f"max R-hat is {self.max_rhat:.3f} (> {RHAT_LIMIT}): the chains have not converged. "
                    "Run more tuning and draws.",
                )
            )
        floor = ESS_PER_CHAIN * self.chains
        if min(self.min_ess_bulk, self.min_ess_tail) < floor:
            out.append(
                (
                    LowESSWarning,
                    f"min effective sample size is {min(self.min_ess_bulk, self.min_ess_tail):.0f} "
                    f"(bulk {self.min_ess_bulk:.0f}, tail {self.min_ess_tail:.0f}; want >= {floor}). "
                    "Draw more samples.",
                )
            )
        if self.treedepth_share > MAX_TREEDEPTH_SHARE:
            out.append(
                (
                    TreeDepthWarning,
                    f"{100 * self.treedepth_share:.1f}% of draws hit the maximum tree depth: sampling was "
                    "inefficient. Consider reparameterising or rescaling predictors.",
                )
            )
        return out


def _parameter_names(idata) -> list[str]:
    return [name for name in idata.posterior.data_vars if not name.startswith("z_")]


def _treedepth_share(stats) -> float:
    if "reached_max_treedepth" in stats:
        return float(stats["reached_max_treedepth"].mean())
    if "maxdepth_reached" in stats:
        return float(stats["maxdepth_reached"].mean())
    return 0.0


def diagnose(idata: az.InferenceData) -> Diagnostics:
    """R-hat, bulk/tail ESS (rank-normalised, ArviZ), divergences and tree-depth saturation."""
    names = _parameter_names(idata)
    post = idata.posterior[names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(post)
        ess_bulk = az.ess(post, method="bulk")
        ess_tail = az.ess(post, method="tail")

    def extreme(ds, fn):
        values = [np.asarray(ds[v]).ravel() for v in ds.data_vars]
        values = np.concatenate(values) if values else np.array([np.nan])
        values = values[np.isfinite(values)]
        return float(fn(values)) if values.size else float("nan")

    stats = idata.sample_stats
    return Diagnostics(
        max_rhat=extreme(rhat, np.max),
        min_ess_bulk=extreme(ess_bulk, np.min),
        min_ess_tail=extreme(ess_tail, np.min),
        divergences=int(stats["diverging"].sum()) if "diverging" in stats else 0,
        treedepth_share=_treedepth_share(stats),
        chains=int(idata.posterior.sizes["chain"]),
        draws=int(idata.posterior.sizes["draw"]),
    )


def warn_diagnostics(diagnostics: Diagnostics) -> None:
    for category, text in diagnostics.messages():
        warnings.warn(text, category, stacklevel=3)
