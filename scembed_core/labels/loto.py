"""The Unknown rule of a reference: leave-one-type-out calibration, stored or on load.

See :mod:`scembed_core.labels.unknown` for the method and the rule itself.
:func:`calibrate_trust` runs the calibration on a reference (at build time with the
training cells' regions, so it can thin them to lower coverage; on load from the stored
cells alone); :func:`trust_calibration` returns the stored one or computes it once;
:func:`flag_unknown` applies the rule to query cells (what
:func:`~scembed_core.labels.assign.assign_labels` calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ParameterError
from ..stopping import check_stop
from .unknown import (
    LEVELS,
    RATES,
    SIGNALS,
    TARGET_FPR,
    TRUST_KEY,
    ClassStats,
    UnknownRule,
    cell_signals,
    class_stats,
    robust_scaling,
    unknown_scores,
    with_combined,
)

if TYPE_CHECKING:
    import scipy.sparse as sp

    from ..reference import Reference

__all__ = ["calibrate_trust", "trust_calibration", "unknown_rule", "flag_unknown"]


def _split(codes: np.ndarray, n_held: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, held-out) indices: about ``n_held`` held, one cell per class kept."""
    rng = np.random.default_rng(seed)
    share = min(0.2, n_held / max(len(codes), 1))
    held = []
    for code in np.unique(codes):
        members = np.flatnonzero(codes == code)
        if len(members) >= 2:
            take = min(max(1, int(round(share * len(members)))), len(members) - 1)
            held.append(rng.permutation(members)[:take])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    return np.setdiff1d(np.arange(len(codes)), held_idx), held_idx


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


SAMPLE_COLUMNS = 2048  # columns whose k-th best similarity bounds each row's from below
ROW_CHUNK = 256  # held-out cells scored at a time (bounds the similarity block's memory)


def _top_k_partition(
    sims: np.ndarray, k: int, hidden: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Columns and cosine distances of the ``k`` most similar columns (a full partition).

    ``hidden``: a bool mask of the columns each row may not pick (None: all allowed).
    """
    if hidden is not None:
        sims = np.where(hidden, -np.inf, sims)
    cols = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return cols, 1.0 - np.take_along_axis(sims, cols, axis=1)


def _select(sims: np.ndarray, floor: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best columns among those at or above its ``floor`` (at least k)."""
    n, m = sims.shape
    found = np.flatnonzero(sims >= floor[:, None])  # row by row, columns ascending
    rows, cols = np.divmod(found, m)
    values = sims.reshape(-1)[found]
    # by row, then most similar first, then the lower column (a stable sort keeps them)
    order = np.argsort(rows * 4.0 + (1.0 - values.astype(np.float64)), kind="stable")
    picked = order[np.searchsorted(rows, np.arange(n))[:, None] + np.arange(k)]
    return cols[picked], 1.0 - values[picked]


def _top_k(
    sims: np.ndarray, k: int, col_codes: np.ndarray, hidden: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Each row's ``k`` most similar columns, and those not of its hidden class.

    Exact, as :func:`_top_k_partition` without and with the mask (ties at the k-th place:
    the lower column first), without partitioning whole rows: the k-th best similarity
    among every ``m // SAMPLE_COLUMNS``-th allowed column is at most the row's k-th best,
    so only the columns at or above it (about ``k * m / SAMPLE_COLUMNS`` per row) are
    sorted. The hidden classes are blanked in ``sims`` itself (it is overwritten) between
    the two selections: the columns must be sorted by class, so each is one block.

    Parameters
    ----------
    sims
        ``(n, m)`` cosine similarities (overwritten).
    k
        Columns per row.
    col_codes
        ``(m,)`` class of each column, ascending.
    hidden
        ``(n,)`` class whose columns row ``i``'s second set may not pick (-1: none).

    Returns
    -------
    tuple
        ``((cols, dist), (cols, dist))``: ``(n, k)`` column indices and cosine distances
        (``1 - similarity``), first with all columns, then without the hidden class.
    """
    n, m = sims.shape
    step = max(1, m // SAMPLE_COLUMNS)
    sample = sims[:, ::step]
    if sample.shape[1] >= k:
        hide = col_codes[None, ::step] == hidden[:, None]
        floor_all = -np.partition(-sample, k - 1, axis=1)[:, k - 1]
        floor = -np.partition(-np.where(hide, -np.inf, sample), k - 1, axis=1)[:, k - 1]
    first = _select(sims, floor_all, k) if sample.shape[1] >= k else _top_k_partition(sims, k)
    for code in np.unique(hidden[hidden >= 0]):
        block = slice(*np.searchsorted(col_codes, [code, code + 1]))
        sims[np.flatnonzero(hidden == code), block] = -np.inf
    if sample.shape[1] < k or not np.isfinite(floor).all():  # < k allowed sampled columns
        return first, _top_k_partition(sims, k)
    return first, _select(sims, floor, k)


def _thin(regions: sp.csr_matrix, fraction: float, rng: np.random.Generator) -> sp.csr_matrix:
    if fraction >= 1.0:
        return regions
    thinned = regions.copy()
    thinned.data = (rng.random(len(thinned.data)) < fraction).astype(thinned.data.dtype)
    thinned.eliminate_zeros()
    return thinned


class _Scorer:
    """Scores held-out reference cells as a query, with any one type hidden."""

    def __init__(
        self, reference: Reference, fit_idx: np.ndarray, codes: np.ndarray, k: int
    ) -> None:
        self.reference = reference
        self.codes = codes
        self.fit_idx = fit_idx
        self.n_classes = int(codes.max()) + 1
        space = reference.cell_space[fit_idx]
        self.fit_codes = codes[fit_idx]
        self.stats = class_stats(space, self.fit_codes, self.n_classes)
        by_class = np.argsort(self.fit_codes, kind="stable")  # each class one column block
        self.column_cells = fit_idx[by_class]
        self.column_codes = self.fit_codes[by_class]
        self.column_unit = _unit(space[by_class])
        self.k = int(min(k, len(fit_idx) - 1))
        model = reference.label_model
        usable = model is not None and model.label_key == reference.default_label_key
        self.model = model if usable else None
        self.temperature = model.temperature if usable else 1.0

    def score(
        self, embedding: np.ndarray, hidden: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
        """Score rows as they are and with their class ``hidden[i]`` hidden (-1: none).

        The similarities to the fit cells are computed once (in row chunks) and both
        neighbour sets picked from them.

        Returns
        -------
        tuple
            Signals and predicted codes with nothing hidden, and signals with the hidden
            class removed from the softmax and the neighbours.
        """
        from .classifier import blend, features_of, softmax
        from .vote import vote_fractions

        hidden = np.asarray(hidden)
        space = self.reference.analysis_space(embedding)
        unit = _unit(space)
        n = len(embedding)
        cols = np.empty((2, n, self.k), dtype=np.int64)
        dist = np.empty((2, n, self.k), dtype=np.float32)
        for start in range(0, n, ROW_CHUNK):
            rows = slice(start, start + ROW_CHUNK)
            sims = unit[rows] @ self.column_unit.T
            both = _top_k(sims, self.k, self.column_codes, hidden[rows])
            (cols[0, rows], dist[0, rows]), (cols[1, rows], dist[1, rows]) = both
        every = np.ones((n, self.n_classes), dtype=bool)
        allowed = np.arange(self.n_classes)[None, :] != hidden[:, None]
        logits = None
        if self.model is not None:
            feats = features_of(embedding, self.reference.whitening, self.model.params.space)
            logits = self.model.logits(feats) / self.temperature
        out = []
        for variant, mask in enumerate((every, allowed)):
            knn = vote_fractions(self.column_cells[cols[variant]], self.codes, self.n_classes)
            if logits is not None:
                weight = self.model.params.knn_weight
                proba = blend(softmax(np.where(mask, logits, -np.inf)), knn, weight)
            else:
                proba = knn
            signals = cell_signals(proba, dist[variant].mean(axis=1), space, self.stats, mask)
            out.append((signals, proba.argmax(axis=1)))
        return out[0][0], out[0][1], out[1][0]


def _fpr_twofold(scores: np.ndarray, rate: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    half = rng.random(len(scores)) < 0.5
    rates = []
    for a, b in ((half, ~half), (~half, half)):
        if a.sum() and b.sum():
            rates.append(float((scores[b] > np.quantile(scores[a], 1 - rate)).mean()))
    return float(np.mean(rates)) if rates else float("nan")


def calibrate_trust(
    reference: Reference,
    regions: sp.csr_matrix | None = None,
    *,
    n_cells: int = 1500,
    target_fpr: float = TARGET_FPR,
    k: int = 15,
    seed: int = 0,
) -> dict:
    """Leave-one-type-out calibration of the Unknown rule and the coverage curve.

    Parameters
    ----------
    reference
        A reference with labelled cells (its first label key is used).
    regions
        Binary reference cells x universe matrix in the order of ``reference.cells``
        (from the training data). With it the held-out cells are also thinned to lower
        coverage (the rule becomes coverage-aware and the coverage curve is measured);
        without it only the stored embeddings are used.
    n_cells
        Held-out cells scored at most (a stratified sample, at most 20% of the cells).
    target_fpr
        Share of known cells the chosen rule may call Unknown.
    k
        Nearest reference cells of the kNN part and the mapping distance.
    seed
        Seed of the split, the thinning and the two-fold rate estimate.

    Returns
    -------
    dict
        ``{"unknown_rule": UnknownRule.to_dict(), "coverage_curve": {...}}`` (plain JSON),
        to be stored under the manifest key :data:`TRUST_KEY`.

    Notes
    -----
    One BLAS thread runs it faster than two (100,000 cells, 2 busy cores: 3.2 s against
    7-8 s, ``benchmarks.labels_build``); the limit holds for the whole process, so a build
    sets it (``build_reference``), a server computing an old bundle's rule does not.
    """
    return _calibrate_trust(reference, regions, n_cells, target_fpr, k, seed)


def _calibrate_trust(
    reference: Reference,
    regions: sp.csr_matrix | None,
    n_cells: int,
    target_fpr: float,
    k: int,
    seed: int,
) -> dict:
    from ..project import pool_region_vectors

    if not reference.can_transfer_labels:
        raise ParameterError("The Unknown rule needs a reference with labelled cells.")
    key = reference.default_label_key
    names = reference.cells.obs[key].astype(str).to_numpy()
    model = reference.label_model
    usable = model is not None and model.label_key == key
    classes = tuple(model.classes) if usable else tuple(np.unique(names))
    codes = np.searchsorted(np.asarray(classes), names)
    if len(classes) < 3:
        raise ParameterError("Leave-one-type-out needs at least three cell types.")
    fit_idx, held_idx = _split(codes, n_cells, seed)
    scorer = _Scorer(reference, fit_idx, codes, k)
    held_codes = codes[held_idx]
    rng = np.random.default_rng(seed)
    levels = LEVELS if regions is not None else (1.0,)
    known, hidden_scores, region_medians, accuracy, n_regions = [], [], [], [], []
    for fraction in levels:
        check_stop("The Unknown rule's calibration")
        if regions is None:
            emb = np.asarray(reference.cells.obsm["X_scembed"], dtype=np.float32)[held_idx]
            counts = np.full(len(held_idx), np.nan)
        else:
            trained = reference.model.trained
            part = _thin(regions[held_idx][:, trained].tocsr(), fraction, rng)
            emb = pool_region_vectors(
                part,
                reference.model.vectors[trained],
                np.ones(int(trained.sum()), dtype=bool),
                pooling=reference.model.pooling,
            )
            counts = np.diff(part.indptr).astype(float)
        ok = np.isfinite(emb).all(axis=1)
        signals, predicted, hid_signals = scorer.score(np.where(ok[:, None], emb, 0.0), held_codes)
        known.append({name: values[ok] for name, values in signals.items()})
        hidden_scores.append({name: values[ok] for name, values in hid_signals.items()})
        n_regions.append(counts[ok])
        region_medians.append(float(np.median(counts[ok])) if regions is not None else 0.0)
        accuracy.append(float((predicted[ok] == held_codes[ok]).mean()))
        if fraction == 1.0:
            full_ok = ok
    scaling = robust_scaling(known[0])
    known = [with_combined(s, scaling) for s in known]
    hidden_scores = [with_combined(s, scaling) for s in hidden_scores]
    hid_codes_full = held_codes[full_ok]
    quantiles = {
        name: [[float(np.quantile(level[name], 1 - r)) for r in RATES] for level in known]
        for name in SIGNALS
    }
    regions_axis = tuple(region_medians) if regions is not None else (0.0,)
    results = {}
    for name in SIGNALS:
        rule = UnknownRule(
            name,
            RATES,
            regions_axis,
            tuple(map(tuple, quantiles[name])),
            target_fpr,
            0.0,
            0.0,
            scaling,
            {},
        )
        cells_regions = n_regions[0] if regions is not None else None
        per_rate = {}
        for rate in RATES:
            above = hidden_scores[0][name] > rule.threshold(rate, cells_regions)
            per_type = {
                classes[c]: float(above[hid_codes_full == c].mean())
                for c in np.unique(hid_codes_full)
            }
            per_rate[rate] = (float(np.mean(list(per_type.values()))), per_type)
        results[name] = per_rate
    best = max(SIGNALS, key=lambda s: results[s][_nearest(target_fpr)][0])
    recall, per_type = results[best][_nearest(target_fpr)]
    fpr = _fpr_twofold(known[0][best], target_fpr, seed)
    by_level = []
    for level, fraction in enumerate(levels):
        threshold = quantiles[best][level][RATES.index(_nearest(target_fpr))]
        by_level.append(
            {
                "fraction": fraction,
                "median_regions": region_medians[level],
                "recall": float((hidden_scores[level][best] > threshold).mean()),
                "fpr": float((known[level][best] > threshold).mean()),
            }
        )
    info = {
        "source": "build" if regions is not None else "computed from the stored cells",
        "n_held_out": int(len(held_idx)),
        "n_fit": int(len(fit_idx)),
        "k": scorer.k,
        "label_key": key,
        "per_type_recall": per_type,
        "recall_curve": {str(r): results[best][r][0] for r in RATES},
        "candidates": {s: results[s][_nearest(target_fpr)][0] for s in SIGNALS},
        "by_level": by_level,
        "method": "leave-one-type-out: class removed from the stored softmax, cells from the kNN",
    }
    rule = UnknownRule(
        best,
        RATES,
        regions_axis,
        tuple(map(tuple, quantiles[best])),
        target_fpr,
        recall,
        fpr,
        scaling,
        info,
    )
    curve = {
        "fraction": list(levels),
        "regions_per_cell": region_medians,
        "accuracy": accuracy,
        "reference_median_regions": region_medians[0],
    }
    return {
        "unknown_rule": rule.to_dict(),
        "coverage_curve": curve if regions is not None else None,
    }


def _nearest(rate: float) -> float:
    return min(RATES, key=lambda r: abs(r - rate))


def trust_calibration(reference: Reference) -> dict | None:
    """Return the reference's trust calibration: stored in its manifest, else computed once.

    A bundle built before the rule existed gets it from its stored cells on first use
    (memoized on the reference; not coverage-aware, no coverage curve). None when the
    reference has no labelled cells or too few types.
    """
    stored = (getattr(reference, "manifest", None) or {}).get(TRUST_KEY)
    if stored:
        return stored
    if not getattr(reference, "can_transfer_labels", False):
        return None

    def compute() -> dict | None:
        try:
            return calibrate_trust(reference)
        except ParameterError:
            return None

    return reference.memoized(("trust_calibration",), compute)


def unknown_rule(reference: Reference) -> UnknownRule | None:
    """Return the reference's :class:`UnknownRule` (see :func:`trust_calibration`), or None."""
    calibration = trust_calibration(reference)
    if not calibration or not calibration.get("unknown_rule"):
        return None
    return UnknownRule.from_dict(calibration["unknown_rule"])


def _reference_stats(reference: Reference, label_key: str, classes: tuple[str, ...]) -> ClassStats:
    def compute() -> ClassStats:
        names = reference.cells.obs[label_key].astype(str).to_numpy()
        codes = np.searchsorted(np.asarray(classes), names)
        return class_stats(reference.cell_space, codes, len(classes))

    return reference.memoized(("unknown_class_stats", label_key, classes), compute)


def flag_unknown(
    reference: Reference,
    embedding: np.ndarray,
    proba: np.ndarray,
    neighbors: tuple[np.ndarray, np.ndarray],
    classes: tuple[str, ...],
    label_key: str,
    n_regions: np.ndarray | None = None,
    rate: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which cells the reference's Unknown rule flags, and their scores.

    Parameters
    ----------
    reference
        The reference the cells were labelled from.
    embedding
        E-projection embeddings.
    proba
        ``(n, n_classes)`` class probabilities in the order of ``classes``.
    neighbors
        ``(indices, distances)`` of the nearest reference cells (at least the rule's ``k``
        columns give its mapping distance; fewer are searched again).
    classes
        Class names of ``proba``.
    label_key
        The reference label column; a rule calibrated on another column is not applied.
    n_regions
        Regions per cell (coverage-aware thresholds); None: full-coverage thresholds.
    rate
        Share of known cells the rule may flag (None: the calibrated rate; 0: off).

    Returns
    -------
    tuple
        ``(unknown, score)``: a bool and a float array (NaN: no embedding or no rule).
    """
    n = len(embedding)
    none = (np.zeros(n, dtype=bool), np.full(n, np.nan))
    if rate is not None and rate <= 0:
        return none
    rule = unknown_rule(reference)
    if rule is None or rule.info.get("label_key", label_key) != label_key:
        return none
    k = int(rule.info.get("k", 15))
    if neighbors is None or neighbors[1].shape[1] < k:
        from .vote import query_reference_neighbors

        neighbors = query_reference_neighbors(reference, embedding, k=k)
    from .vote import row_mean_ignoring_nan

    distance = row_mean_ignoring_nan(np.asarray(neighbors[1][:, :k], dtype=np.float64))
    stats = _reference_stats(reference, label_key, tuple(classes))
    score = unknown_scores(reference, rule, proba, distance, embedding, stats)
    rate = rule.target_fpr if rate is None else float(rate)
    threshold = rule.threshold(rate, None if n_regions is None else np.asarray(n_regions))
    return np.isfinite(score) & (score > threshold), score
