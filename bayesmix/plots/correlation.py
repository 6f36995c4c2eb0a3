"""correlation(): a block's fitted correlation matrix as a heatmap, each cell labelled, and its
structure (ar1's and cs's rho) in the title."""

from __future__ import annotations

import numpy as np

from bayesmix.after.fit_view import view
from bayesmix.bayes.names import covariance_moments
from bayesmix.design.covariance import ONE_SD_STRUCTURES
from bayesmix.errors import BayesmixError
from bayesmix.plots._common import _one_group, _single_axes


def correlation(model, group=None, *, idata=None, ax=None):
    """The correlation matrix of ``group``'s random effects: the exact fit's, or the posterior mean
    of each correlation for a sampled model. Cells are labelled with their values; the title names
    the structure (unstructured, or ar1/cs with rho). Returns the Axes."""
    source = view(model, idata)
    design = source.design
    group = _one_group(design, group)
    sampled = [b for b in design.blocks if b.covariance.kind not in ONE_SD_STRUCTURES]  # correlations to show
    blocks = [b for b in sampled if b.group == group and b.n_terms > 1]
    if not blocks:
        raise BayesmixError(
            f"The random effects of '{group}' have one term per block, so there is no correlation to draw."
        )
    block = blocks[0]
    source.require()
    corr, parameter = _correlation(source, block)
    ax = _single_axes(ax, (1.2 + 0.55 * block.n_terms, 0.9 + 0.5 * block.n_terms))
    image = ax.imshow(corr, vmin=-1.0, vmax=1.0, cmap="RdBu_r", gid="correlation")
    for i in range(block.n_terms):
        for j in range(block.n_terms):
            colour = "white" if abs(corr[i, j]) > 0.6 else "black"
            ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=8, color=colour)
    ticks = np.arange(block.n_terms)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(block.terms, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(block.terms, fontsize=8)
    kind = block.covariance.kind
    structure = "unstructured" if kind == "us" else f"{kind}, {parameter}"
    fit = "posterior means" if source.bayes else f"{source.label} fit"
    ax.set_title(f"Correlation of the {group} effects\n({structure}; {fit})", fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def _correlation(source, block) -> tuple[np.ndarray, str | None]:
    """(k, k) correlations, and the structure's parameter as text (rho = ..., or range = ...;
    None for an unstructured block)."""
    k = block.n_terms
    if source.bayes:
        post = source.idata.posterior
        corr = covariance_moments(post, block)["corr"] if k > 1 else np.eye(k)
        entry = {
            key: float(post[f"{key}_{block.label}"].mean())
            for key in ("rho", "range")
            if f"{key}_{block.label}" in post
        }
        if f"lags_{block.label}" in post:
            entry["lags"] = post[f"lags_{block.label}"].mean(("chain", "draw")).values
    else:
        entry = next(
            v for v in source.obj.varcorr if v["group"] == block.group and list(v["terms"]) == list(block.terms)
        )
        corr = np.asarray(entry["corr"], dtype=float)
    text = [f"{key} = {entry[key]:.3g}" for key in ("rho", "range") if key in entry]
    if "lags" in entry:
        text.append("lags " + " ".join(f"{value:.2f}" for value in entry["lags"]))
    return corr, (text[0] if text else None)
