"""A PyMC model as a builder made it, with what sampling it needs besides the graph.

A builder (:mod:`bayesmix.bayes.collapsed`; :mod:`bayesmix.bayes.build`'s models need nothing more than the
graph) returns a :class:`BuiltModel`; the sampler (:func:`bayesmix.nuts.run.run_nuts`) takes it and
reads these values as fields, and the caller finishes the draws with :meth:`BuiltModel.finish`.
This module imports neither the builders nor the sampler, so both can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import arviz as az
    import numpy as np
    import pymc as pm


def _no_scales() -> dict:
    return {}


@dataclass(frozen=True)
class BuiltModel:
    """``model``: the PyMC model NUTS samples.

    ``derived_values``: values per draw that :attr:`post_draw` adds after sampling (the collapsed
    model's integrated-out effects), counted against the memory budget with the sampled ones.
    ``initial_scales()``: rough posterior SDs of the value variables, by name, that NUTS's mass
    matrix starts from (called only when the sampler needs them: it may read every row); ``{}``: the
    sampler's unit default. ``post_draw(idata, seed)``: what the sampler does not draw, added to
    ``idata`` in place (seeded by ``seed``); None: nothing. ``sampler_log_likelihood``: whether the
    sampler can compute the pointwise log-likelihood from the model's observed variables (False when
    the model has none and the post-draw step computes it).
    """

    model: pm.Model
    derived_values: int = 0
    initial_scales: Callable[[], dict[str, np.ndarray]] = _no_scales
    post_draw: Callable[..., None] | None = None
    sampler_log_likelihood: bool = True

    def finish(self, idata: az.InferenceData, seed: int) -> None:
        """Run :attr:`post_draw` on the sampler's ``idata`` (nothing when there is none)."""
        if self.post_draw is not None:
            self.post_draw(idata, seed)


def built_model(model: BuiltModel | pm.Model) -> BuiltModel:
    """``model`` itself when it is a BuiltModel; a bare ``pm.Model`` (e.g. from
    :func:`bayesmix.bayes.build.build_model`) as one with the graph alone."""
    return model if isinstance(model, BuiltModel) else BuiltModel(model)
