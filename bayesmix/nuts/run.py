"""NUTS through PyMC's samplers, convergence diagnostics, and the warnings users need.

Samplers: ``"pymc"`` (PyTensor's C backend), ``"nutpie"`` (JAX, else numba; low-rank mass
matrix, :func:`nutpie_options`), ``"numpyro"`` and ``"blackjax"`` (JAX). ``"auto"`` takes the
fastest one installed, end to end with compilation: numpyro, then nutpie, then pymc. Every
sampler is seeded from ``random_seed``, and the same seed gives the same draws for the same sampler
and package versions, in this process or another.

Ctrl-C (KeyboardInterrupt): ``"pymc"`` and ``"nutpie"`` stop and return the draws made so far,
marked ``idata.posterior.attrs["bayesmix_interrupted"] = 1`` with a SamplingInterruptedWarning;
``"numpyro"`` and ``"blackjax"`` run their chains inside one compiled JAX call and keep nothing, so
KeyboardInterrupt is raised again with a message saying so (:func:`run_nuts`).

Memory: the draws (chains x draws x values per draw) must fit the memory budget
(:mod:`bayesmix.memory`), else BayesmixError before sampling; the pointwise log-likelihood (chains
x draws x rows) is skipped with a warning when it does not fit.
"""

from __future__ import annotations

import functools
import gc
import importlib
import math
import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm

from bayesmix import memory
from bayesmix.bayes.built import BuiltModel, built_model
from bayesmix.errors import (
    BayesmixError,
    BayesmixWarning,
    DivergenceWarning,
    LowESSWarning,
    RhatWarning,
    SamplingInterruptedWarning,
    TreeDepthWarning,
    did_you_mean,
    warn,
)
from bayesmix.nuts import convergence, numpyro_driver
from bayesmix.nuts.jax_config import configure_jax

SAMPLERS = ("auto", "pymc", "nutpie", "numpyro", "blackjax")
AUTO_ORDER = ("numpyro", "nutpie", "pymc")  # sampler="auto": the fastest importable one
_REQUIRES = {"nutpie": ("nutpie",), "numpyro": ("jax", "jaxlib", "numpyro"), "blackjax": ("jax", "jaxlib", "blackjax")}
# how to get each sampler: numpyro (and JAX) are core dependencies, so they are missing only from a
# partial install; blackjax and nutpie are extras
INSTALL = {
    "numpyro": "pip install jax jaxlib numpyro",
    "blackjax": "pip install 'bayesmix[jax]'",
    "nutpie": "pip install 'bayesmix[nutpie]'",
}
RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100
MAX_TREEDEPTH_SHARE = 0.01


JAX_MODULES = ("jax", "jaxlib", "numpyro", "blackjax", "nutpie")  # importing any may import JAX


def prepare_jax() -> None:
    """What JAX needs set before it is first imported (XLA's CPU devices, the persistent compilation
    cache: :func:`bayesmix.nuts.jax_config.configure_jax`); done here, when a sampler is first looked for or
    run, not when bayesmix is imported. Then, once, the objects the imports made (PyMC, PyTensor,
    JAX: about a million, living as long as the process) leave the cyclic garbage collector's sight,
    which otherwise traverses them at every full collection and at exit."""
    configure_jax()
    if not _FROZEN:
        _FROZEN.append(True)
        importable("numpyro")  # the default sampler's imports (JAX's among them) made before the freeze
        gc.freeze()


_FROZEN: list[bool] = []


@functools.cache
def importable(module: str) -> bool:
    """Whether ``module`` imports (not only whether it is installed: a JAX without its jaxlib, or
    one made unimportable, counts as missing). Cached: a module that imported stays imported."""
    if module.split(".")[0] in JAX_MODULES:
        configure_jax()
    try:
        importlib.import_module(module)
    except Exception:  # ImportError, or a broken install (jaxlib's own checks raise RuntimeError)
        return False
    return True


def _missing(sampler: str) -> list[str]:
    return [module for module in _REQUIRES.get(sampler, ()) if not importable(module)]


def _installed(sampler: str) -> bool:
    return not _missing(sampler)


def resolve_sampler(name: str) -> str:
    """The concrete sampler for ``name``; BayesmixError when unknown or not importable.

    ``"auto"`` takes the first importable of numpyro, nutpie, pymc; when it is not numpyro, one
    BayesmixWarning says what is missing and how to install it."""
    if name not in SAMPLERS:
        raise BayesmixError(f"Unknown sampler '{name}'.{did_you_mean(name, SAMPLERS)} Samplers: {', '.join(SAMPLERS)}.")
    if name == "auto":
        concrete = next(s for s in AUTO_ORDER if _installed(s))
        if concrete != AUTO_ORDER[0]:
            warn(_fallback_note(concrete), BayesmixWarning)
        return concrete
    missing = _missing(name)
    if missing:
        raise BayesmixError(
            f"sampler='{name}' needs {' and '.join(missing)}, which cannot be imported. "
            f"Install with: {INSTALL[name]}; or use sampler='pymc'."
        )
    return name


def _fallback_note(concrete: str) -> str:
    """The one line sampler="auto" warns when it cannot use numpyro."""
    missing = ", ".join(_missing("numpyro"))
    slower = "PyMC's own NUTS (slower to compile and run)" if concrete == "pymc" else "nutpie"
    collapsed = "" if collapsed_is_fast() else ", gaussian models non-centred rather than collapsed"
    return (
        f"sampler='auto': numpyro's NUTS is not available ({missing} cannot be imported); sampling with "
        f"{slower}{collapsed}. For the fast sampler: {INSTALL['numpyro']}"
    )


def collapsed_is_fast() -> bool:
    """Whether ``parameterization="auto"`` should take the collapsed gaussian model: where JAX runs
    its log density. Without JAX, PyTensor's C backend evaluates that density's gradient (batched
    small-matrix algebra over the levels) many times slower than the non-centred model's, and the
    centred model's unit starting scales make PyMC's adaptation slow (docs/performance.md), so
    ``"auto"`` then takes the non-centred model, the same posterior."""
    return importable("jax")


def jax_chain_method(chains: int) -> str:
    """How the JAX samplers (numpyro, blackjax) run the chains.

    ``parallel``: one XLA device per chain, when there are enough devices (on the CPU bayesmix asks
    XLA for one device per core, see ``bayesmix.nuts.jax_config``). On a single accelerator (GPU, TPU):
    ``vectorized``, all chains as one batched computation, which is what an accelerator is good
    at. Otherwise ``sequential`` (numpyro; blackjax has no such method and gets ``vectorized``).
    On the CPU ``vectorized`` is the slowest: every chain waits for the longest trajectory.
    """
    import jax

    if jax.local_device_count() >= chains:
        return "parallel"
    return "vectorized" if jax.default_backend() != "cpu" else "sequential"


def nutpie_options() -> dict:
    """nutpie's options: its JAX backend where JAX is installed (it compiles a model much faster than
    numba, nutpie's default), and its low-rank modified mass matrix, which adapts to the
    correlations between parameters: more effective draws per second than its diagonal metric where
    parameters are correlated (benchmarks/mass_matrix.py, docs/performance.md)."""
    options = {"low_rank_modified_mass_matrix": True}
    if importable("jax"):
        options.update(backend="jax", gradient_backend="jax")
    return options


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


PARTIAL_SAMPLERS = ("pymc", "nutpie")  # samplers that return the draws made before a Ctrl-C


def _size(model: pm.Model, variable) -> int:
    """Number of values of ``variable``: from its dims' coords, else its static shape."""
    dims = model.named_vars_to_dims.get(variable.name)
    if dims and all(d in model.coords for d in dims):
        return math.prod(len(model.coords[d]) for d in dims)
    return math.prod(1 if s is None else int(s) for s in variable.type.shape)


def values_per_draw(model: BuiltModel | pm.Model) -> int:
    """Values stored per posterior draw: the free variables, the deterministics, and what is
    derived after sampling (the collapsed model's random effects, ``BuiltModel.derived_values``)."""
    built = built_model(model)
    stored = sum(_size(built.model, v) for v in built.model.free_RVs + built.model.deterministics)
    return stored + int(built.derived_values)


def initial_inverse_mass(model: BuiltModel | pm.Model) -> np.ndarray | None:
    """NUTS's starting diagonal inverse mass matrix, flattened in the order of the model's value
    variables: the squared rough posterior SDs the builder gave (``BuiltModel.initial_scales``), 1
    for the rest (the samplers' default); None when it gave none. Adaptation goes on from there; it
    changes no posterior."""
    built = built_model(model)
    scales = built.initial_scales()
    if not scales:
        return None
    model = built.model
    point = model.initial_point()
    parts = []
    for var in model.value_vars:
        size = int(np.size(point[var.name]))
        scale = np.asarray(scales.get(var.name, np.ones(size)), dtype=float).ravel()
        parts.append(scale**2 if scale.size == size and np.all(np.isfinite(scale) & (scale > 0)) else np.ones(size))
    return np.concatenate(parts) if parts else np.zeros(0)


def n_observations(model: pm.Model) -> int:
    """Values of the observed variables: the length of the pointwise log-likelihood per draw."""
    return sum(_size(model, v) for v in model.observed_RVs)


def check_memory(model: BuiltModel | pm.Model, draws: int, chains: int, log_likelihood: bool) -> bool:
    """Refuse draws above the memory budget; return whether the pointwise log-likelihood fits."""
    memory.check(
        "The posterior draws (chains x draws x values per draw)",
        (chains, draws, values_per_draw(model)),
        "Sample fewer draws (draws=...) or chains; the random effects of every level are stored for every draw.",
    )
    n = n_observations(built_model(model).model)
    if log_likelihood and n and not memory.fits((chains, draws, n)):
        warn(
            f"The pointwise log-likelihood ({chains} x {draws} x {n} doubles = "
            f"{memory.format_bytes(8 * chains * draws * n)}) was not stored: it is above the memory budget of "
            f"{memory.format_bytes(memory.memory_budget())} (bayesmix.set_memory_budget). az.loo needs it: sample "
            "fewer draws, or raise the budget.",
            BayesmixWarning,
        )
        return False
    return log_likelihood


class _CtrlC:
    """Whether Ctrl-C was pressed while sampling (set by the SIGINT handler :func:`_catch_ctrl_c` installs)."""

    def __init__(self):
        self.pressed = False

    def stop_later_chains(self, trace=None, draw=None) -> None:
        """PyMC callback. PyMC's sequential sampler catches a Ctrl-C and goes on with the next chain;
        after the first Ctrl-C every later chain stops at its first step."""
        if self.pressed:
            raise KeyboardInterrupt


@contextmanager
def _catch_ctrl_c():
    """Record Ctrl-C (then raise KeyboardInterrupt as usual); only in the main thread, and only
    when SIGINT has Python's default handler."""
    flag = _CtrlC()
    handler = signal.getsignal(signal.SIGINT)
    install = threading.current_thread() is threading.main_thread() and handler is signal.default_int_handler

    def on_sigint(signum, frame):
        flag.pressed = True
        signal.default_int_handler(signum, frame)

    if install:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        if install:
            signal.signal(signal.SIGINT, handler)


def complete_draws(idata: az.InferenceData) -> np.ndarray:
    """Per chain, the number of leading draws whose values are all finite (nutpie pads the chains
    it stopped with NaN)."""
    post = idata.posterior
    chains, length = post.sizes.get("chain", 0), post.sizes.get("draw", 0)
    finite = np.ones((chains, length), dtype=bool)
    for name in post.data_vars:
        values = np.asarray(post[name].values, dtype=float).reshape(chains, length, -1)
        finite &= np.isfinite(values).all(axis=2)
    return np.cumprod(finite, axis=1).sum(axis=1)


def keep_complete(idata: az.InferenceData, counts: np.ndarray) -> az.InferenceData:
    """Keep the chains and draws that give the most complete draws (as PyMC's ``_choose_chains``):
    the k longest chains, cut to the k-th longest's length."""
    order = np.argsort(-counts, kind="stable")
    k = int(np.argmax([(i + 1) * counts[order[i]] for i in range(len(order))]))
    chains, length = np.sort(order[: k + 1]), int(counts[order[k]])
    groups = {}
    for name in idata.groups():
        group = idata[name]
        if "chain" in group.dims:
            group = group.isel(chain=chains)
            if "draw" in group.dims and not name.startswith("warmup"):
                group = group.isel(draw=slice(0, length))
        groups[name] = group
    return az.InferenceData(**groups)


def _no_partial_draws(concrete: str) -> str:
    return (
        f"Sampling was interrupted (Ctrl-C). sampler='{concrete}' keeps no draws when interrupted: its chains run "
        "inside one compiled call. Use sampler='pymc' or sampler='nutpie' to keep the draws made before an "
        "interrupt."
    )


def _nothing_kept(tune: int) -> str:
    return (
        f"Sampling was interrupted (Ctrl-C) before the first draw after the {tune} tuning steps; no draws were kept. "
        "Run sample() again."
    )


def _interrupted(message: str) -> KeyboardInterrupt:
    warn(message, SamplingInterruptedWarning)
    return KeyboardInterrupt(message)


def mark_interruption(idata: az.InferenceData, draws: int, chains: int, tune: int) -> az.InferenceData:
    """When fewer complete draws than asked came back, keep the complete ones, mark the result
    (``bayesmix_interrupted``, ``bayesmix_draws_kept``) and warn; raise KeyboardInterrupt when none."""
    counts = complete_draws(idata)
    if len(counts) == chains and idata.posterior.sizes["draw"] == draws and bool(np.all(counts == draws)):
        return idata
    if not np.any(counts > 0):
        raise _interrupted(_nothing_kept(tune))
    attrs = dict(idata.posterior.attrs)
    idata = keep_complete(idata, counts)
    kept_chains, kept_draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    attrs.update({"bayesmix_interrupted": 1, "bayesmix_draws_kept": int(kept_chains * kept_draws)})
    idata.posterior.attrs.update(attrs)
    warn(
        f"Sampling was interrupted (Ctrl-C): kept {kept_draws} of {draws} draws in {kept_chains} of {chains} "
        f"chain(s), {kept_chains * kept_draws} draws in all (idata.posterior.attrs['bayesmix_interrupted'] = 1). "
        "Summaries and diagnostics describe these draws only; run sample() again for the full number.",
        SamplingInterruptedWarning,
    )
    return idata


def run_nuts(
    model: BuiltModel | pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    random_seed,
    sampler: str,
    progressbar: bool,
    target_accept: float,
    log_likelihood: bool = True,
    low_rank_metric: bool = True,
) -> az.InferenceData:
    """Sample ``model`` with NUTS; the InferenceData holds posterior, sample_stats,
    observed_data and the pointwise log_likelihood. Its posterior attrs record the sampler and seed.
    ``model``: a :class:`~bayesmix.bayes.built.BuiltModel` (its starting scales and its values derived
    after sampling are used; its post-draw step is the caller's, :meth:`BuiltModel.finish`), or a
    ``pm.Model``. ``low_rank_metric`` False: numpyro keeps its diagonal metric for larger models
    (:func:`bayesmix.nuts.numpyro_driver.sample`).

    Refuses (BayesmixError) draws above the memory budget; skips the pointwise log-likelihood, with
    a warning, when it does not fit (and when the model has no observed variables to compute it
    from, ``BuiltModel.sampler_log_likelihood``). Ctrl-C: with ``"pymc"`` or ``"nutpie"`` the draws
    made so far are returned, marked ``posterior.attrs["bayesmix_interrupted"] = 1`` (and
    ``"bayesmix_draws_kept"``), with a SamplingInterruptedWarning; when no draw was kept
    (interrupted while tuning), or with ``"numpyro"``/``"blackjax"``, KeyboardInterrupt is raised
    again, its message (also a SamplingInterruptedWarning) saying so.
    """
    check_counts(draws=draws, tune=tune, chains=chains)
    if not 0.5 <= target_accept < 1:
        raise BayesmixError(f"target_accept must be in [0.5, 1), not {target_accept!r}.")
    built = built_model(model)
    prepare_jax()
    concrete = resolve_sampler(sampler)
    seed = seed_from(random_seed)
    log_likelihood = check_memory(built, int(draws), int(chains), log_likelihood and built.sampler_log_likelihood)
    run = _SamplerRun.of(concrete, int(chains))
    kwargs = dict(
        draws=int(draws),
        tune=int(tune),
        chains=int(chains),
        random_seed=seed,
        model=built.model,
        progressbar=progressbar,
        target_accept=target_accept,
        idata_kwargs={"log_likelihood": log_likelihood},
        compute_convergence_checks=False,
        **run.kwargs,
    )
    with warnings.catch_warnings(), _catch_ctrl_c() as ctrl_c:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        if concrete == "pymc":
            kwargs["callback"] = ctrl_c.stop_later_chains
        try:
            idata = _sample(concrete, kwargs, built, log_likelihood, low_rank_metric)
        except KeyboardInterrupt:
            raise _interrupted(
                _nothing_kept(tune) if concrete in PARTIAL_SAMPLERS else _no_partial_draws(concrete)
            ) from None
        except ValueError as error:  # PyMC's "Not enough samples to build a trace": stopped while tuning
            if "Not enough samples" not in str(error):
                raise
            raise _interrupted(_nothing_kept(tune)) from None
    if run.jax_compiled:
        _release_compiled_programs()
    idata = mark_interruption(idata, int(draws), int(chains), int(tune))
    if log_likelihood and "log_likelihood" not in idata.groups():
        pm.compute_log_likelihood(idata, model=built.model, progressbar=False)
    idata.posterior.attrs.update({"bayesmix_sampler": concrete, "bayesmix_seed": seed, "tuning_steps": int(tune)})
    if run.chain_method is not None:
        idata.posterior.attrs["bayesmix_chain_method"] = run.chain_method
    return idata


@dataclass(frozen=True)
class _SamplerRun:
    """How a concrete sampler is called: its extra ``pm.sample`` arguments, how the JAX samplers run
    the chains (None for the others), and whether it compiles JAX programs."""

    kwargs: dict
    chain_method: str | None
    jax_compiled: bool

    @classmethod
    def of(cls, concrete: str, chains: int) -> _SamplerRun:
        if concrete == "pymc":
            return cls({"cores": 1 if chains == 1 else None}, None, False)
        if concrete == "nutpie":
            options = nutpie_options()
            jax_backend = options.get("backend") == "jax"
            return cls({"nuts_sampler": concrete, "nuts_sampler_kwargs": options}, None, jax_backend)
        chain_method = jax_chain_method(chains)  # numpyro, blackjax
        if concrete == "blackjax" and chain_method == "sequential":
            chain_method = "vectorized"
        kwargs = {"nuts_sampler": concrete, "nuts_sampler_kwargs": {"chain_method": chain_method}}
        return cls(kwargs, chain_method, True)


def _release_compiled_programs() -> None:
    """Drop JAX's in-memory caches after a JAX sampler ran. Every fit converts a new PyMC graph, so
    its compiled programs are never reused in this process (JAX's persistent cache on disk keeps
    them for the next), yet they stayed mapped: a process that fitted many models ran out of memory
    maps at the kernel's limit (vm.max_map_count: "LLVM compilation error: Cannot allocate memory";
    docs/diagnostics.md). This also clears the caches of JAX functions of your own."""
    import jax

    jax.clear_caches()


def _sample(
    sampler: str, kwargs: dict, built: BuiltModel, log_likelihood: bool, low_rank_metric: bool
) -> az.InferenceData:
    """One NUTS run: numpyro through :mod:`bayesmix.nuts.numpyro_driver`; blackjax through PyMC's JAX
    sampling function called directly (``pm.sample`` would first compile PyMC's own step methods,
    which an external sampler never uses); pymc and nutpie through ``pm.sample``."""
    if sampler == "numpyro":
        return numpyro_driver.sample(
            built.model,
            draws=kwargs["draws"],
            tune=kwargs["tune"],
            chains=kwargs["chains"],
            seed=kwargs["random_seed"],
            target_accept=kwargs["target_accept"],
            chain_method=kwargs["nuts_sampler_kwargs"]["chain_method"],
            progressbar=kwargs["progressbar"],
            log_likelihood=log_likelihood,
            diagonal_metric=lambda: initial_inverse_mass(built),
            low_rank_metric=low_rank_metric,
        )
    if sampler == "blackjax":
        from pymc.sampling import jax as pymc_jax

        options = {key: value for key, value in kwargs.items() if key != "nuts_sampler_kwargs"}
        return pymc_jax.sample_jax_nuts(**options, **kwargs["nuts_sampler_kwargs"])
    return pm.sample(**kwargs)


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
    post = idata.posterior
    chains, draws = post.sizes.get("chain", 0), post.sizes.get("draw", 0)
    columns = [
        np.asarray(post[name].transpose("chain", "draw", ...).values, dtype=float).reshape(chains, draws, -1)
        for name in _parameter_names(idata)
    ]
    values = np.concatenate(columns, axis=2) if columns else np.zeros((chains, draws, 0))
    # ArviZ's rank-normalised estimators, vectorised over parameters (bayesmix.nuts.convergence)
    rhat, ess_bulk, ess_tail = convergence.rhat(values), convergence.ess_bulk(values), convergence.ess_tail(values)

    def extreme(values, fn):
        values = values[np.isfinite(values)]
        return float(fn(values)) if values.size else float("nan")

    stats = idata.sample_stats if "sample_stats" in idata.groups() else {}  # none from e.g. pm.fit (ADVI)
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
        warn(text, category)
