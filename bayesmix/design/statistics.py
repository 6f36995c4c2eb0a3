"""Data larger than memory: a Dask DataFrame reduced to the sufficient statistics of a linear mixed model.

A Gaussian mixed model's likelihood depends on the data only through cross-products of [Z X y],
which are sums over rows. So the data side is a map-reduce that Dask runs (on a local cluster or a
distributed one, partition by partition, never all rows in one process), and the ML/REML engine
runs on one machine from the summed statistics, at a cost that does not depend on the rows:

1. one pass finds what the encoding needs: missing values per column, the levels of every factor
   and grouping factor (the observed combinations for ``a:b``), one row per level of each factor
   predictor (so formulae learns every level);
2. formulae is fitted on those rows (plus the first rows), which fixes the level codings, and each
   partition is encoded with them exactly as new data are (:func:`bayesmix.design.encode.encode_new_data`);
3. each partition's :class:`~bayesmix.design.crossprod.RawCrossProducts` are computed where the partition
   lives, and summed in a tree.

A design of one random-effect block whose grouping factor is the only factor column (``y ~ x +
(x | g)``) needs no survey: the codings come from the first rows, each partition's statistics are
keyed by the levels it has (:class:`LevelStatistics`), merged by level in the tree, and ordered at
the end (:func:`_learning_pass`), so the files are read once.

Transformations that learn from the data (``scale``, ``center``, ``standardize``) would learn from
the first rows only, so they are refused: standardise the columns in Dask first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bayesmix.design.crossprod import RawCrossProducts, lme4_order, raw_cross_products
from bayesmix.design.encode import (
    Block,
    Codings,
    build_design,
    check_columns,
    check_weights,
    encode_new_data,
    evaluate_expression,
    level_order,
    normalise_categorical,
    report_missing,
    value_columns,
    weight_columns,
    with_default_index,
)
from bayesmix.design.fixed import NO_RESIDUAL_GRAM, aliased_from_gram, no_residual_message
from bayesmix.design.formula import FormulaSpec
from bayesmix.design.moments import DesignMoments
from bayesmix.design.partitions import (
    EncodedRows,
    Partitions,
    add_parts,
    each,
    persist,
    progress_reporter,
    tree_sum,
)
from bayesmix.errors import BayesmixError

STATEFUL_TRANSFORMS = ("scale(", "center(", "standardize(", "poly(", "bs(", "ns(", "cr(", "cc(")
PROTOTYPE_ROWS = 1000


def is_dask_frame(data) -> bool:
    """Whether ``data`` is a Dask DataFrame (without importing Dask when it is not)."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "to_delayed")


@dataclass(frozen=True)
class StatsDesign:
    """A design known through its sufficient statistics (the rows stay in Dask).

    Like :class:`~bayesmix.design.encode.Design` for what does not need rows: ``spec``, ``fixed_names``,
    ``blocks`` (levels and terms; their ``codes``/``Zt`` are empty), ``codings`` (new data are
    encoded as with an in-memory design), ``nobs``, ``ngrps``, ``n_dropped``. ``raw``: the summed
    cross-products, blocks in lme4 order, every fixed-effect column; ``moments``: the summed column
    moments the default priors read.
    """

    spec: FormulaSpec
    fixed_names: tuple[str, ...]
    blocks: tuple[Block, ...]
    codings: Codings
    n_dropped: int
    raw: RawCrossProducts
    moments: DesignMoments
    trials = None
    submodels: ClassVar[dict] = {}  # zi= and dispersion= formulas need the rows: refused for a Dask frame
    censoring = None
    rows = None
    offset = None  # the partitions' offsets are taken out of the response's sums
    in_memory = False
    # a GLMM's encoded rows, kept where the partitions live (bayesmix.design.partitions); None: sums only
    partitions: Partitions | None = None

    @property
    def nobs(self) -> int:
        return self.raw.n

    @property
    def ngrps(self) -> dict[str, int]:
        return {block.group: block.n_levels for block in self.blocks}

    @property
    def all_blocks(self) -> tuple[Block, ...]:
        return self.blocks  # no submodels: only the mean's blocks

    # The design protocol of design/encode.py's Design, answered from the summed cross-products.

    def _split(self) -> tuple[int, int]:
        """(q2, p): where X's columns start in ``raw.RR`` (after blocks 2..B) and how many there are."""
        blocks = [self.blocks[i] for i in lme4_order(self.blocks)]
        return sum(b.n_levels * b.n_terms for b in blocks[1:]), len(self.fixed_names)

    def fixed_columns(self) -> tuple[list[int], tuple[str, ...], tuple[str, ...]]:
        """The fixed-effect columns the data identify, from X'X alone."""
        q2, p = self._split()
        return aliased_from_gram(self.raw.RR[q2 : q2 + p, q2 : q2 + p], self.fixed_names)

    def check_residual(self, columns: list[int]) -> None:
        """Refuse a response the fixed effects reproduce exactly, from X'X, X'y and y'y."""
        RR = self.cross_products(columns).RR
        XX, Xy, yy = RR[:-1, :-1][-len(columns) :, -len(columns) :], RR[:-1, -1][-len(columns) :], RR[-1, -1]
        rss = yy - Xy @ np.linalg.solve(XX, Xy) if len(columns) else yy
        if rss <= NO_RESIDUAL_GRAM * yy:
            raise BayesmixError(no_residual_message(len(columns), self.nobs) + " (Or the response is constant.)")

    def cross_products(self, columns: list[int] | None = None, dense: bool = True) -> RawCrossProducts:
        """The summed cross-products, restricted to the ``columns`` of X (dense whatever ``dense``
        says: the partitions' sums are added as dense arrays)."""
        if columns is None:
            return self.raw
        q2, p = self._split()
        keep = np.r_[np.arange(q2), q2 + np.asarray(columns, dtype=int), q2 + p]
        return RawCrossProducts(
            D=self.raw.D,
            RZ1=self.raw.RZ1[keep],
            RR=self.raw.RR[np.ix_(keep, keep)],
            n=self.raw.n,
            log_weights=self.raw.log_weights,
        )

    def _rows_needed(self, what: str):
        raise BayesmixError(
            f"This model was built from a Dask DataFrame, so its {what} is not in memory. Pass the rows you "
            "need (a pandas DataFrame), e.g. fit.predict(data), or compute the Dask frame first."
        )

    @property
    def X(self):
        self._rows_needed("fixed-effects matrix")

    @property
    def y(self):
        self._rows_needed("response")

    @property
    def data(self):
        self._rows_needed("data")


def _refuse_stateful(spec: FormulaSpec) -> None:
    known = [term.group for term in spec.random if term.structure == "known"]
    if known:
        raise BayesmixError(
            f"cov= couples the levels of '{known[0]}' across every row, which a Dask DataFrame's statistics pass "
            "does not keep. Fit it on a pandas DataFrame."
        )
    members = [term.group for term in spec.random if term.membership is not None]
    if members:
        raise BayesmixError(
            f"{members[0]} gives a row several levels, which a Dask DataFrame's statistics pass (one level per row "
            "and block) does not keep. Fit it on a pandas DataFrame."
        )
    if spec.smooths:
        raise BayesmixError(
            f"{spec.smooths[0].label} learns its basis from every row, which a Dask DataFrame's statistics pass does "
            "not keep. Fit the smooth on a pandas DataFrame (a sample of the rows, if they are many)."
        )
    for part in (spec.fixed, *(term.expr for term in spec.random)):
        for name in STATEFUL_TRANSFORMS:
            if name in part:
                raise BayesmixError(
                    f"'{name[:-1]}(...)' learns from the data, and with a Dask DataFrame it would see only the first "
                    f"rows. Standardise the column in Dask first (e.g. ddf['x_s'] = (ddf.x - ddf.x.mean()) / "
                    "ddf.x.std()) and use the new column."
                )


@dataclass(frozen=True)
class Survey:
    """What the encoding needs to know of the rows, for one partition or several added up: missing
    values per column, rows, complete rows, and among the complete rows the distinct values of
    each factor and each ``a:b`` group's columns."""

    na: pd.Series
    rows: int
    complete: int
    uniques: dict[str, pd.Series]
    combos: dict[str, pd.DataFrame]

    def __add__(self, other: Survey) -> Survey:
        return Survey(
            self.na + other.na,
            self.rows + other.rows,
            self.complete + other.complete,
            {k: pd.concat([v, other.uniques[k]], ignore_index=True).drop_duplicates() for k, v in self.uniques.items()},
            {k: pd.concat([v, other.combos[k]], ignore_index=True).drop_duplicates() for k, v in self.combos.items()},
        )


def _complete_rows(part: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """(missing values per column, the complete rows): a copy only where some row is incomplete."""
    missing = part.isna()
    na = missing.sum()
    return na, (part if not na.any() else part[~missing.any(axis=1)])


def _survey_partition(part: pd.DataFrame, factors: list[str], combos: dict) -> Survey:
    """One partition's :class:`Survey`."""
    na, complete = _complete_rows(part)
    return Survey(
        na,
        len(part),
        len(complete),
        {name: pd.Series(complete[name].unique()) for name in factors},
        {group: complete[list(parts)].drop_duplicates() for group, parts in combos.items()},
    )


def _survey(ddf, spec: FormulaSpec, factors: list[str]) -> Survey:
    """One pass over the data (a :class:`Survey` per partition, added up in a tree)."""
    import dask

    combos = {term.group: term.factors for term in spec.random if len(term.factors) > 1}
    (total,) = dask.compute(tree_sum(each(_survey_partition, ddf.to_delayed(), factors, combos)))
    return total


def _interaction_levels(pairs: dict, spec: FormulaSpec, orders: dict) -> dict[str, tuple[str, ...]]:
    """Observed ``a:b`` combinations named and ordered as :func:`bayesmix.design.encode._group_codes` does."""
    combos = {term.group: term.factors for term in spec.random if len(term.factors) > 1}
    out = {}
    for group, frame in pairs.items():
        parts = combos[group]
        codes = np.column_stack([pd.Categorical(frame[p], categories=list(orders[p])).codes for p in parts])
        out[group] = tuple(":".join(str(orders[p][c]) for p, c in zip(parts, row)) for row in np.unique(codes, axis=0))
    return out


def _prototype(first: pd.DataFrame, orders: dict, predictors: list[str], grouping: set[str]) -> pd.DataFrame:
    """Rows formulae learns the codings from: the first rows, plus copies of the first row carrying
    every level of each factor predictor and two levels of each grouping factor (no transformation
    that learns from values is allowed, so the copies' other values do not matter)."""
    template = first.iloc[[0]]
    rows = [first]
    for name in predictors:
        rows.append(template.loc[template.index.repeat(len(orders[name]))].assign(**{name: list(orders[name])}))
    for name in sorted(grouping):
        rows.append(
            template.loc[template.index.repeat(2)].assign(
                **{name: list(orders[name][:2]) * (2 // len(orders[name][:2]))}
            )
        )
    return pd.concat(rows, ignore_index=True)


@dataclass(frozen=True)
class Statistics:
    """What one partition contributes (``rows``: before incomplete rows were dropped); partitions add up."""

    raw: RawCrossProducts
    moments: DesignMoments
    rows: int

    def __add__(self, other: Statistics) -> Statistics:
        raw, moments = (add_parts(a, b) for a, b in ((self.raw, other.raw), (self.moments, other.moments)))
        return Statistics(raw, moments, self.rows + other.rows)


def encode_rows(part: pd.DataFrame, design: StatsDesign, family=None) -> EncodedRows | None:
    """One partition encoded with the design's frozen codings; ``family``: checks the response's
    support (a GLMM's rows are kept; a gaussian model's only summed)."""
    if len(part) == 0:  # a partition whose rows all had missing values
        return None
    part = with_default_index(part)
    new = encode_new_data(design, part)
    y = evaluate_expression(part, design.spec.response.expr, "response")
    weights = None
    if design.spec.weights is not None:
        check_weights(part, design.spec, part.index)
        weights = evaluate_expression(part, design.spec.weights, "weights")
    if family is not None:
        family.check_response(y, new.trials)
    return EncodedRows(new.X, y, new.trials, new.offset, weights, tuple(new.blocks))


def row_statistics(rows: EncodedRows, design: StatsDesign, order: list[int]) -> Statistics:
    """A partition's cross-products (the response less the offset: a gaussian model's sums need
    only that) and column moments (of the response as given, as an in-memory design's)."""
    y = rows.y if rows.offset is None else rows.y - rows.offset
    blocks = [(rows.blocks[i][0], rows.blocks[i][1], design.blocks[i].n_levels) for i in order]
    moments = DesignMoments.of(rows.X, rows.y, rows.trials, [Zt for _, Zt in rows.blocks])
    return Statistics(raw_cross_products(blocks, rows.X, y, weights=rows.weights), moments, rows.n)


CHUNK_ROWS = 1 << 17  # rows encoded at a time within a partition (see _partition_statistics)


def _partition_statistics(part: pd.DataFrame, design: StatsDesign, order: list[int]) -> Statistics:
    """A partition's statistics over its complete rows (``rows`` counts them all), summed over
    chunks of :data:`CHUNK_ROWS` rows: a chunk's arrays (X, [X y], Z) are a few MB, which the
    allocator reuses from chunk to chunk, where a 10^6-row partition's were fresh memory mapped
    anew (and page-faulted in) for every array of every partition."""
    return _chunked_statistics(_complete_rows(part)[1], design, order, len(part))


def _chunked_statistics(complete: pd.DataFrame, design: StatsDesign, order: list[int], rows: int) -> Statistics:
    """The statistics of ``complete`` rows, :data:`CHUNK_ROWS` at a time (``rows``: the
    partition's rows, complete or not; with no complete rows the sums are None)."""
    total = Statistics(None, None, 0)
    for start in range(0, len(complete), CHUNK_ROWS):
        total = total + row_statistics(encode_rows(complete.iloc[start : start + CHUNK_ROWS], design), design, order)
    return replace(total, rows=rows)


def _check_finite(moments: DesignMoments, fixed_names) -> None:
    """Infinite values make the sums infinite: name the columns (set them to NaN to drop those rows)."""
    bad = [
        name
        for name, low, high in zip(fixed_names, moments.X.low, moments.X.high)
        if not np.isfinite([low, high]).all()
    ]
    if not np.isfinite([moments.y.low[0], moments.y.high[0]]).all():
        bad.insert(0, "the response")
    if bad:
        raise BayesmixError(
            f"The data have infinite values in {', '.join(bad)}. Replace them, or set them to NaN to drop those rows."
        )


def build_stats_design(
    spec: FormulaSpec, ddf, categorical=None, missing: str = "drop", contrasts=None, family=None, progress=None
) -> StatsDesign:
    """Reduce a Dask DataFrame to a :class:`StatsDesign` (see the module docstring). ``family``
    (a GLMM's): the encoded partitions are also kept where they live (:attr:`StatsDesign.partitions`),
    for a Laplace fit that reads them at every step; the statistics are then summed from them.
    ``progress``: :func:`bayesmix.design.partitions.progress_reporter`'s, told as each partition
    of the statistics pass finishes.

    A gaussian model's survey first reads only the factor columns (the levels the encoding needs),
    and the statistics pass drops incomplete rows itself: where no row has a missing value, the
    files are read once in full. Where some row has one, the survey is taken again over all
    columns (the levels of the complete rows, the missing values counted and reported) and the
    statistics pass runs again on the complete rows."""
    _refuse_stateful(spec)
    report = progress_reporter(progress)
    if spec.response.is_binomial and family is None:
        raise BayesmixError("A Dask DataFrame is supported for gaussian models; cbind()/p() responses need the rows.")
    used = check_columns(spec, ddf)
    categorical = normalise_categorical(categorical, ddf)
    ddf = ddf[used]
    if missing not in ("drop", "raise"):
        raise BayesmixError(f"missing must be 'drop' or 'raise', not {missing!r}.")
    factors = _factor_columns(spec, ddf, used, categorical)
    if family is None and _one_pass(spec, factors):
        design, survey = _learning_pass(spec, ddf, categorical, factors, contrasts, report)
        _check_survey(survey, spec, missing)
        _check_finite(design.moments, design.fixed_names)
        return design
    if family is None:
        surveyed = sorted({*factors, *(f for term in spec.random for f in term.factors)}, key=used.index)
        survey = _survey(ddf[surveyed], spec, factors)
        if survey.rows == 0:
            raise BayesmixError("data has no rows. Pass the DataFrame that holds your observations.")
        if survey.complete == survey.rows:
            design, order = _encoding(spec, _first_rows(ddf), survey, categorical, factors, contrasts, 0)
            total = _statistics_pass(ddf, design, order, report)
            if total.raw is not None and total.rows == total.raw.n:  # no row had a missing value
                _check_finite(total.moments, design.fixed_names)
                return replace(design, raw=total.raw, moments=total.moments)
    survey = _survey(ddf, spec, factors)
    _check_survey(survey, spec, missing)
    if survey.complete < survey.rows:  # a dropna that drops nothing still copies every partition
        ddf = ddf.dropna()
    n_dropped = survey.rows - survey.complete
    design, order = _encoding(spec, _first_rows(ddf), survey, categorical, factors, contrasts, n_dropped)
    partitions = None
    if family is None:
        total = _statistics_pass(ddf, design, order, report)
    else:
        partitions = Partitions.persist(each(encode_rows, ddf.to_delayed(), design, family), report)
        total = partitions.sum(row_statistics, design, order)
    _check_finite(total.moments, design.fixed_names)
    return replace(design, raw=total.raw, moments=total.moments, partitions=partitions)


def _factor_columns(spec: FormulaSpec, ddf, used: list[str], categorical: dict) -> list[str]:
    """The used columns whose levels the encoding needs: grouping factors, columns named in
    ``categorical=``, and every non-numeric or boolean column."""
    grouping = {f for term in spec.random for f in term.factors}
    dtypes = ddf.dtypes
    return [
        name
        for name in used
        if name in categorical
        or name in grouping
        or not pd.api.types.is_numeric_dtype(dtypes[name])
        or pd.api.types.is_bool_dtype(dtypes[name])
    ]


def _check_survey(survey: Survey, spec: FormulaSpec, missing: str) -> None:
    """No rows, missing weights, and the missing values' report (or refusal, ``missing="raise"``)."""
    na, n_rows, n_complete = survey.na, survey.rows, survey.complete
    if n_rows == 0:
        raise BayesmixError("data has no rows. Pass the DataFrame that holds your observations.")
    unweighted = {c: int(na[c]) for c in weight_columns(spec) if int(na[c])}
    if unweighted:
        raise BayesmixError(
            f"weights '{spec.weights.strip('`')}' must be given in every row; the column(s) "
            f"{', '.join(f'{c} ({n} missing)' for c, n in unweighted.items())} have missing values. Drop those rows "
            "or give them a positive weight."
        )
    report_missing(int(n_rows - n_complete), int(n_rows), {c: int(v) for c, v in na.items()}, missing)


def _statistics_pass(ddf, design: StatsDesign, order: list[int], report) -> Statistics:
    import dask

    parts = each(_partition_statistics, ddf.to_delayed(), design, order)
    if report is not None:  # each partition's sums kept (small) until all are in, to count them
        parts = persist(parts, report)
    (total,) = dask.compute(tree_sum(parts))
    return total


def _first_rows(ddf) -> pd.DataFrame:
    """The first complete rows (up to PROTOTYPE_ROWS), which teach formulae the columns."""
    with warnings.catch_warnings():  # a short first partition is fine: any rows teach formulae the columns
        warnings.filterwarnings("ignore", message="Insufficient elements for `head`")
        first = ddf.head(PROTOTYPE_ROWS, npartitions=1).dropna()
        if len(first) == 0:  # the first partition has no complete row
            first = ddf.dropna().head(PROTOTYPE_ROWS, npartitions=-1)
    return first


def _encoding(
    spec: FormulaSpec, first, survey: Survey, categorical, factors, contrasts, n_dropped: int, minimum_levels: int = 2
):
    """The codings (formulae fitted on prototype rows: ``first``, :func:`_first_rows`, and a row
    per surveyed level) and the blocks with the surveyed levels: a :class:`StatsDesign` without
    statistics, and its blocks' lme4 order."""
    grouping = {f for term in spec.random for f in term.factors}
    orders = {name: level_order(name, values, categorical.get(name)) for name, values in survey.uniques.items()}
    interactions = _interaction_levels(survey.combos, spec, orders)
    predictors = [name for name in factors if name in value_columns(spec)]
    proto = build_design(spec, _prototype(first, orders, predictors, grouping), orders, contrasts=contrasts)
    blocks = []
    for block in proto.blocks:
        term = spec.random[block.term]
        levels = interactions[term.group] if len(term.factors) > 1 else tuple(str(v) for v in orders[term.group])
        if len(levels) < minimum_levels:
            raise BayesmixError(
                f"The grouping factor '{term.group}' has {len(levels)} level in the data used; random effects need "
                "at least two. Remove the term, or use the factor as a fixed effect."
            )
        empty = np.zeros(0, dtype=np.int64)
        blocks.append(replace(block, levels=levels, codes=empty, Zt=np.zeros((0, block.n_terms))))
    # proto.spec: the formula as encoded, with the factors' contrasts written in; the statistics
    # are filled in by the caller (the partitions need the codings, not the statistics)
    design = StatsDesign(proto.spec, proto.fixed_names, tuple(blocks), proto.codings, int(n_dropped), None, None)
    return design, lme4_order(tuple(blocks))


def _one_pass(spec: FormulaSpec, factors: list[str]) -> bool:
    """Whether the statistics pass can learn the levels as it sums (:func:`_learning_pass`): one
    random-effect block of one grouping factor, which is the only factor column and appears in no
    expression (so the fixed part's and the block's codings do not depend on its levels)."""
    if len(spec.random) != 1 or len(spec.random[0].factors) != 1:
        return False
    (group,) = spec.random[0].factors
    term = spec.random[0]
    return factors == [group] and term.structure == "us" and group not in value_columns(spec)


@dataclass(frozen=True)
class LevelStatistics:
    """A one-block design's statistics over some partitions, keyed by the grouping factor's level
    names (``names``: the block's D and RZ1 in this order), with those levels' values (``values``,
    indexed by name, for the final order) and the survey's counts; partitions merge by name."""

    names: pd.Index
    values: pd.Series
    statistics: Statistics
    na: pd.Series
    complete: int

    def __add__(self, other: LevelStatistics) -> LevelStatistics:
        names = self.names.append(other.names).unique()
        raws = [_relevel(part.statistics.raw, names.get_indexer(part.names), len(names)) for part in (self, other)]
        statistics = Statistics(
            add_parts(*raws),
            add_parts(self.statistics.moments, other.statistics.moments),
            self.statistics.rows + other.statistics.rows,
        )
        values = pd.concat([self.values, other.values])
        return LevelStatistics(
            names, values[~values.index.duplicated()], statistics, self.na + other.na, self.complete + other.complete
        )


def _relevel(raw: RawCrossProducts | None, positions: np.ndarray, levels: int) -> RawCrossProducts | None:
    """A one-block ``raw`` with its levels moved to ``positions`` among ``levels`` (zero elsewhere)."""
    if raw is None:
        return None
    k = raw.D.shape[1]
    D = np.zeros((levels, k, k))
    D[positions] = raw.D
    columns = (positions[:, None] * k + np.arange(k)).ravel()
    RZ1 = sp.csr_matrix((raw.RZ1.data, columns[raw.RZ1.indices], raw.RZ1.indptr), shape=(raw.RZ1.shape[0], levels * k))
    return replace(raw, D=D, RZ1=RZ1)


def _level_partition(part: pd.DataFrame, design: StatsDesign, group: str) -> LevelStatistics:
    """A partition's :class:`LevelStatistics`: its complete rows encoded with the design's codings
    and, as its block's levels, the ones this partition has (by name), in chunks of
    :data:`CHUNK_ROWS` rows."""
    na, complete = _complete_rows(part)
    values = pd.Series(complete[group].unique())
    values.index = pd.Index([str(v) for v in values])
    values = values[~values.index.duplicated()]
    local = replace(design, blocks=(replace(design.blocks[0], levels=tuple(values.index)),))
    total = _chunked_statistics(complete, local, [0], len(part))
    return LevelStatistics(values.index, values, total, na, len(complete))


def _learning_pass(spec: FormulaSpec, ddf, categorical, factors, contrasts, report) -> tuple[StatsDesign, Survey]:
    """One read of the data for a one-block design (:func:`_one_pass`): the codings from the first
    rows, then each partition's statistics keyed by the levels it has, merged by level; the levels
    then take their order (as :func:`bayesmix.design.encode.level_order` gives it) and the codings
    are fitted again with them. Returns the design and the survey the pass made along the way."""
    import dask

    (group,) = spec.random[0].factors
    first = _first_rows(ddf)
    seen = _survey_partition(first, factors, {})
    provisional, _ = _encoding(spec, first, seen, categorical, factors, contrasts, 0, minimum_levels=0)
    parts = each(_level_partition, ddf.to_delayed(), provisional, group)
    if report is not None:
        parts = persist(parts, report)
    (total,) = dask.compute(tree_sum(parts))
    rows = total.statistics.rows
    survey = Survey(total.na, rows, total.complete, {group: total.values.reset_index(drop=True)}, {})
    if rows == 0 or total.complete == 0:
        return None, survey
    design, _ = _encoding(spec, first, survey, categorical, factors, contrasts, rows - total.complete)
    order = total.names.get_indexer(list(design.blocks[0].levels))
    raw = _relevel(total.statistics.raw, np.argsort(order), len(order))
    return replace(design, raw=raw, moments=total.statistics.moments), survey
