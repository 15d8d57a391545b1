"""Plotting: the dashboard's Plotly figures, AnnData first, usable from a notebook.

::

    import scembed_core as se

    se.tl.project(adata, reference)
    se.tl.transfer_labels(adata, reference)
    se.pl.query(adata, reference, color="scembed_label")   # cells on the reference map
    se.pl.confusion(adata, "cell_type")                    # against your own labels
    se.pl.calibration(reference)                           # is the label model honest?

Every function returns a ``plotly.graph_objects.Figure`` (``fig.show()`` in a notebook,
``fig.write_html(...)`` for a file). Plotly is imported on the first call, not with
:mod:`scembed_core`; it comes with the ``[plot]`` (or ``[app]``) extra. The array-level
builders the app calls are in :mod:`.maps`, :mod:`.charts` and :mod:`.reliability`;
:mod:`.palette` decides colours (:func:`label_colors`, the one place to change them) and
:mod:`.common` holds escaping and sampling. To add a figure: an array-level builder in the
module of its kind, taking colours from :func:`label_colors`, and an AnnData-first wrapper
here, listed in ``__all__`` (``tests/core/test_structure.py`` checks its docstring).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import MissingDependencyError, ParameterError
from .palette import label_colors

if TYPE_CHECKING:
    import anndata as ad
    import plotly.graph_objects as go

    from ..reference import Reference

__all__ = [
    "calibration",
    "clusters",
    "confusion",
    "counts",
    "coverage",
    "label_colors",
    "query",
    "reference",
]

#: Default keys, as :mod:`scembed_core.results` writes them (a test holds them equal).
UMAP_KEY = "X_scembed_umap"
LABEL_KEY = "scembed_label"
CLUSTER_KEY = "scembed_cluster"
CONFIDENCE_KEY = "scembed_label_confidence"


def _require_plotly() -> None:
    try:
        import plotly  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "scembed_core.pl draws with plotly, which is not installed: "
            "pip install 'scembed-dashboard[plot]' (or plotly>=6)."
        ) from exc


def _reference_coords(reference: Reference | None) -> np.ndarray | None:
    if reference is None or reference.cells is None or "X_umap" not in reference.cells.obsm:
        return None
    return np.asarray(reference.cells.obsm["X_umap"])


def _column(adata: ad.AnnData, key: str, what: str) -> np.ndarray:
    if key not in adata.obs:
        raise ParameterError(
            f"obs[{key!r}] ({what}) is missing; found {list(adata.obs.columns)[:20]}. "
            "Run the se.tl step that writes it, or pass another key."
        )
    return adata.obs[key].to_numpy()


def _basis(adata: ad.AnnData, basis: str) -> np.ndarray:
    if basis not in adata.obsm:
        raise ParameterError(
            f"obsm[{basis!r}] is missing (found {list(adata.obsm)}): run se.tl.project "
            "with a reference that has a map, or pass basis=."
        )
    return np.asarray(adata.obsm[basis], dtype=float)


def reference(
    reference: Reference,
    *,
    label_key: str | None = None,
    title: str | None = None,
    max_points: int = 50_000,
) -> go.Figure:
    """Draw a reference's map (UMAP) coloured by cell type.

    Parameters
    ----------
    reference
        A reference with cells and a map (:func:`scembed_core.load_reference`).
    label_key
        The ``obs`` column of the reference cells to colour by (default: the reference's
        default label key).
    title
        Figure title.
    max_points
        Cells drawn at most (a reproducible sample beyond).

    Returns
    -------
    plotly.graph_objects.Figure
        One trace per cell type, named ``"type (n)"``.

    Raises
    ------
    scembed_core.errors.ParameterError
        The reference has no map or no such label column.

    Examples
    --------
    >>> se.pl.reference(se.load_reference("default")).show()  # doctest: +SKIP
    """
    _require_plotly()
    from .maps import reference_map

    coords = _reference_coords(reference)
    key = label_key or reference.default_label_key
    if coords is None or key is None or key not in reference.cells.obs:
        raise ParameterError(
            "This reference has no map with labelled cells to draw (a region-only model?)."
        )
    return reference_map(
        coords,
        reference.cells.obs[key],
        max_points=max_points,
        title=title or f"Reference map by {key}",
        reference=reference,
    )


def query(
    adata: ad.AnnData,
    reference: Reference | None = None,
    *,
    color: str = LABEL_KEY,
    basis: str = UMAP_KEY,
    continuous: bool | None = None,
    title: str | None = None,
    max_points: int = 50_000,
) -> go.Figure:
    """Draw projected query cells on the reference map, coloured by an ``obs`` column.

    Parameters
    ----------
    adata
        Cells after :func:`scembed_core.tl.project` (and, to colour by label or cluster,
        ``tl.transfer_labels`` or ``tl.cluster``).
    reference
        The reference projected onto: its cells are drawn in grey underneath and its colour
        map (if any) is used. None: the query cells alone.
    color
        The ``obs`` column to colour by: categories get a legend, many numbers a scale.
    basis
        The ``obsm`` key of the 2-D coordinates.
    continuous
        Force a colour scale (True) or categories (False); inferred when None.
    title
        Figure title.
    max_points
        Query cells drawn at most (a reproducible sample beyond).

    Returns
    -------
    plotly.graph_objects.Figure
        The grey ``"reference"`` trace (with a reference), then the query cells.

    Raises
    ------
    scembed_core.errors.ParameterError
        ``basis`` or ``color`` is missing from ``adata``.

    Examples
    --------
    >>> se.pl.query(adata, reference, color="scembed_cluster")  # doctest: +SKIP
    """
    import pandas as pd

    _require_plotly()
    from .maps import query_map

    coords = _basis(adata, basis)
    values = pd.Series(_column(adata, color, "the colour"), name=color)
    hover = {"cell": adata.obs_names.to_numpy(), color: values.to_numpy()}
    for key in (LABEL_KEY, CONFIDENCE_KEY, CLUSTER_KEY):
        if key in adata.obs and key not in hover:
            hover[key] = adata.obs[key].to_numpy()
    return query_map(
        coords,
        values,
        pd.DataFrame(hover),
        reference_coords=_reference_coords(reference),
        max_points=max_points,
        continuous=continuous,
        title=title,
        reference=reference,
    )


def clusters(
    adata: ad.AnnData,
    reference: Reference | None = None,
    *,
    key: str = CLUSTER_KEY,
    basis: str = UMAP_KEY,
    n_cols: int = 4,
) -> go.Figure:
    """Draw one small map per cluster (or label) over the grey reference (paper Fig. 4F).

    Parameters
    ----------
    adata
        Cells after :func:`scembed_core.tl.project` and ``tl.cluster``.
    reference
        Drawn in grey in every panel; None: the query cells themselves.
    key
        The ``obs`` column that splits the panels.
    basis
        The ``obsm`` key of the 2-D coordinates.
    n_cols
        Panels per row.

    Returns
    -------
    plotly.graph_objects.Figure
        Two traces per panel (background, cells), panels titled ``"cluster (n)"``.

    Raises
    ------
    scembed_core.errors.ParameterError
        ``basis`` or ``key`` is missing from ``adata``.
    """
    _require_plotly()
    from .maps import cluster_panels

    return cluster_panels(
        _basis(adata, basis),
        _column(adata, key, "the panels"),
        reference_coords=_reference_coords(reference),
        n_cols=n_cols,
    )


def confusion(
    adata: ad.AnnData,
    truth_key: str,
    *,
    predicted_key: str = LABEL_KEY,
    normalize_rows: bool = True,
) -> go.Figure:
    """Draw the confusion matrix of transferred labels against the user's own labels.

    Parameters
    ----------
    adata
        Cells after :func:`scembed_core.tl.transfer_labels`.
    truth_key
        The ``obs`` column with the user's labels (rows).
    predicted_key
        The ``obs`` column with the predicted labels (columns).
    normalize_rows
        Show the fraction of each row (recall per class) rather than counts.

    Returns
    -------
    plotly.graph_objects.Figure
        One heatmap trace (:func:`scembed_core.evaluate.classification_report`'s
        confusion).

    Raises
    ------
    scembed_core.errors.ParameterError
        Either column is missing.
    """
    _require_plotly()
    from ..evaluate import classification_report
    from .charts import confusion_heatmap

    report = classification_report(
        _column(adata, truth_key, "the truth"), _column(adata, predicted_key, "the prediction")
    )
    return confusion_heatmap(report.confusion, normalize_rows=normalize_rows)


def counts(
    adata: ad.AnnData,
    key: str = LABEL_KEY,
    *,
    reference: Reference | None = None,
    title: str | None = None,
) -> go.Figure:
    """Draw a bar chart of cells per category of an ``obs`` column (largest first).

    Parameters
    ----------
    adata
        Any cells (a query, or ``reference.cells``).
    key
        The ``obs`` column to count.
    reference
        Its colour map (if any) colours the bars as on the maps.
    title
        Figure title (default: "Cells per <key>").

    Returns
    -------
    plotly.graph_objects.Figure
        One bar trace.

    Raises
    ------
    scembed_core.errors.ParameterError
        ``key`` is missing.
    """
    import pandas as pd

    _require_plotly()
    from .charts import count_bar

    values = pd.Series(_column(adata, key, "the categories")).astype(str)
    return count_bar(values.value_counts(), title=title or f"Cells per {key}", reference=reference)


def _label_model_calibration(reference: Reference) -> dict:
    model = reference.label_model
    calibration_ = getattr(model, "calibration", None) if model is not None else None
    if not calibration_:
        raise ParameterError(
            "This reference has no label classifier with a calibration to draw "
            "(a kNN-vote-only or region-only reference)."
        )
    return calibration_


def calibration(reference: Reference, *, title: str | None = None) -> go.Figure:
    """Draw the reliability diagram of a reference's label classifier (held-out cells).

    Parameters
    ----------
    reference
        A reference with a label classifier.
    title
        Figure title (default: "Reliability" with the expected calibration error).

    Returns
    -------
    plotly.graph_objects.Figure
        The diagonal, then the bins (marker size: cells per bin).

    Raises
    ------
    scembed_core.errors.ParameterError
        The reference has no label classifier.

    Examples
    --------
    >>> se.pl.calibration(se.load_reference("default")).show()  # doctest: +SKIP
    """
    _require_plotly()
    from .reliability import reliability_curve

    return reliability_curve(_label_model_calibration(reference), title=title)


def coverage(reference: Reference, *, threshold: float | None = None) -> go.Figure:
    """Draw accuracy against the share of cells labelled as the probability threshold rises.

    Parameters
    ----------
    reference
        A reference with a label classifier (its held-out cells are plotted).
    threshold
        A probability threshold to mark.

    Returns
    -------
    plotly.graph_objects.Figure
        The curve, then the marked threshold when given.

    Raises
    ------
    scembed_core.errors.ParameterError
        The reference has no label classifier.
    """
    _require_plotly()
    from .reliability import coverage_curve

    return coverage_curve(_label_model_calibration(reference), threshold=threshold)
