"""Annotation page, Evidence tab: what a biologist checks a cluster's label against.

- the second opinion beside each cluster's label (best-matching reference type by
  accessibility profile; where it disagrees the tab says so);
- a dot plot, clusters x genes: mean gene activity (colour) and fraction of cells with an
  open peak in the gene (size), for the reference's canonical markers (its manifest's
  ``marker_genes``, editable) plus any searched gene;
- the reference map coloured by one gene's activity in the query cells;
- each cluster's top marker regions with their nearest genes and UCSC links, as CSV.

Every number comes from a cached engine call (``scembed_core.gene_activity``,
``scembed_core.markers``, ``scembed_core.labels.second_opinion``) keyed by the upload's
digest, the reference and the clustering; the tab is a fragment, so picking a gene reruns
only it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from scembed_app import figures, results, state, widgets
from scembed_app.uploads import LoadedDataset

GENES_KEY = "evidence_genes"
MAP_GENE_KEY = "evidence_map_gene"
MARKER_CLUSTER_KEY = "evidence_marker_cluster"
UCSC = "https://genome.ucsc.edu/cgi-bin/hgTracks?db={db}&position={chrom}:{start}-{end}"


def _clusters_digest(clusters: pd.Series) -> str:
    """A short key for a grouping: its labels in order (vectorized hash, no join of strings)."""
    hashed = pd.util.hash_pandas_object(clusters.astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def _freeze(activity: Any) -> Any:
    """Make a shared activity matrix read-only (it is cached for every session)."""
    for matrix in (activity.X, *activity.layers.values()):
        for array in (getattr(matrix, "data", None), getattr(matrix, "indices", None)):
            if isinstance(array, np.ndarray):
                array.flags.writeable = False
    return activity


@st.cache_resource(show_spinner="Computing gene activity...", max_entries=4, ttl=3600)
def cached_gene_activity(digest: str, genome: str, _adata: Any) -> Any:
    """Cells x genes activity of the upload (genes whose window holds a peak).

    Kept once per (upload, genome) and shared, not copied on every rerun: its arrays are
    read-only, and the page only reads slices of it.
    """
    from scembed_core.gene_activity import gene_activity

    return _freeze(gene_activity(_adata, genome, drop_empty=True))


@st.cache_data(show_spinner="Ranking marker regions...", max_entries=8, ttl=3600)
def cached_markers(digest: str, clusters_key: str, genome: str, _adata: Any, _clusters: Any) -> Any:
    """Top marker regions per cluster with their nearest genes."""
    from scembed_core.markers import rank_regions_table, regions_of

    table, _ = rank_regions_table(
        _adata.X, np.asarray(_clusters), regions_of(_adata), genome=genome, n_top=50, min_cells=3
    )
    return table


@st.cache_data(
    show_spinner="Comparing clusters with the reference types...", max_entries=8, ttl=3600
)
def cached_second_opinion(
    digest: str, reference_key: str, clusters_key: str, _adata: Any, _clusters: Any, _ref: Any
) -> Any:
    """Clusters x reference types scores, or None when the reference has no profiles."""
    from scembed_core.labels.second_opinion import query_cluster_scores
    from scembed_core.markers import regions_of

    return query_cluster_scores(_adata.X, regions_of(_adata), np.asarray(_clusters), _ref)


def default_genes(reference: Any, available: pd.Index) -> list[str]:
    """The reference's canonical marker genes (manifest ``marker_genes``) that have peaks."""
    markers = reference.manifest.get("marker_genes") or {}
    genes = [g for lineage in markers.values() for g in lineage]
    return [g for g in dict.fromkeys(genes) if g in available]


def dot_plot(activity: Any, clusters: pd.Series, genes: list[str]) -> go.Figure:
    """Clusters x genes: colour the mean activity, size the fraction of cells open."""
    sub = activity[:, genes]
    counts = sub.layers["counts"].toarray() > 0
    values = sub.X.toarray()
    groups = clusters.astype(str).to_numpy()
    names = sorted(set(groups), key=_natural)
    mean = pd.DataFrame(values, columns=genes).groupby(groups).mean().loc[names]
    frac = pd.DataFrame(counts, columns=genes).groupby(groups).mean().loc[names]
    xs, ys = np.meshgrid(np.arange(len(genes)), np.arange(len(names)))
    size = 4 + 26 * frac.to_numpy().ravel() / max(float(frac.to_numpy().max()), 1e-9)
    text = [
        f"cluster {c}<br>{g}: mean activity {m:.2f}, {f:.0%} of cells open"
        for c, g, m, f in zip(
            np.asarray(names)[ys.ravel()], np.asarray(genes)[xs.ravel()],
            mean.to_numpy().ravel(), frac.to_numpy().ravel(), strict=True,
        )
    ]  # fmt: skip
    fig = go.Figure(
        go.Scatter(
            x=np.asarray(genes)[xs.ravel()],
            y=np.asarray(names)[ys.ravel()],
            mode="markers",
            marker={
                "size": size,
                "color": mean.to_numpy().ravel(),
                "colorscale": "Reds",
                "showscale": True,
                "colorbar": {"title": {"text": "mean activity"}},
                "line": {"width": 0.5, "color": "#888"},
            },
            text=figures.escape_text(text),
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        height=max(300, 28 * len(names) + 140),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "gene (dot size: fraction of cells open)", "type": "category"},
        yaxis={"title": "cluster", "type": "category", "autorange": "reversed"},
    )
    return fig


def _natural(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def ucsc_links(table: pd.DataFrame, genome: str) -> pd.Series:
    """A UCSC Genome Browser URL per region (1-based closed coordinates)."""
    return pd.Series(
        [
            UCSC.format(db=genome, chrom=c, start=int(s) + 1, end=int(e))
            for c, s, e in zip(table["chrom"], table["start"], table["end"], strict=True)
        ],
        index=table.index,
    )


def _second_opinion(scores: Any, table: pd.DataFrame, reference: Any) -> None:
    from scembed_core.labels.second_opinion import UNAVAILABLE, with_second_opinion

    st.markdown("**Second opinion: the reference type each cluster's accessibility matches**")
    if scores is None:
        st.info(f"Second opinion {UNAVAILABLE}.", icon=":material/info:")
        return
    rows = with_second_opinion(table, scores, reference.manifest.get("lineages") or {})
    disagree = rows.loc[~rows["markers_agree"], "cluster"].astype(str).tolist()
    if disagree:
        st.warning(
            f"Cluster{'s' if len(disagree) > 1 else ''} {', '.join(map(widgets.md, disagree))}: "
            "the label and the accessibility profile disagree (the best-matching type is "
            "neither the label nor of its lineage). Check the marker genes below.",
            icon=":material/rule:",
        )
    else:
        st.success("Every cluster's label agrees with its accessibility profile.")
    st.dataframe(
        rows[["cluster", "label", "second_opinion", "second_opinion_score", "markers_agree"]],
        hide_index=True,
        column_config={
            "second_opinion": st.column_config.TextColumn("best-matching type (accessibility)"),
            "second_opinion_score": st.column_config.NumberColumn(
                "profile correlation", format="%.2f"
            ),
            "markers_agree": st.column_config.CheckboxColumn("agrees (type or lineage)"),
        },
        key="evidence_second_opinion",
    )


@st.fragment
def evidence_view(
    run: state.ProjectionRun,
    dataset: LoadedDataset,
    reference: Any,
    cluster: pd.Series,
    table: pd.DataFrame,
    labels: pd.Series | None = None,
) -> None:
    """Render the Evidence tab (see the module docstring); ``labels``: per-cell labels."""
    from scembed_core.genes import GENOMES

    genome = str(reference.genome)
    adata = dataset.adata
    clusters_key = _clusters_digest(cluster)
    scores = cached_second_opinion(
        dataset.digest, run.reference_key, clusters_key, adata, cluster.to_numpy(), reference
    )
    _second_opinion(scores, table, reference)
    if genome not in GENOMES:
        st.info(
            f"No gene annotation for the reference's genome build {widgets.md(genome)}: gene "
            "activity and nearest genes need hg19 or hg38."
        )
        return
    activity = cached_gene_activity(dataset.digest, genome, adata)
    available = activity.var_names
    st.markdown(f"**Marker genes** (gene body + 2 kb upstream, {genome})")
    defaults = default_genes(reference, available)
    if GENES_KEY not in st.session_state:
        st.session_state[GENES_KEY] = defaults
    genes = st.multiselect(
        "Genes (the reference's canonical markers; type to search any gene with a peak)",
        list(available),
        key=GENES_KEY,
    )
    if genes:
        widgets.plot(dot_plot(activity, cluster, genes), key="evidence_dot_plot")
    else:
        st.caption("Pick genes to draw the dot plot.")
    _activity_map(run, reference, activity, cluster, genes or defaults or list(available[:1]))
    _marker_table(dataset, genome, cluster, labels)


def _activity_map(
    run: state.ProjectionRun, reference: Any, activity: Any, cluster: pd.Series, genes: list[str]
) -> None:
    from scembed_app.label_views import map_coordinates

    st.markdown("**Gene activity on the reference map**")
    options = list(activity.var_names)
    if st.session_state.get(MAP_GENE_KEY) not in options:
        st.session_state[MAP_GENE_KEY] = genes[0] if genes and genes[0] in options else options[0]
    gene = st.selectbox("Colour the map by the activity of", options, key=MAP_GENE_KEY)
    coords, on_reference = map_coordinates(run)
    values = pd.Series(activity[:, gene].X.toarray().ravel(), name=f"{gene} activity")
    hover = results.hover_fields(activity.obs_names, cluster, None)
    hover[f"{gene} activity"] = values.round(2).to_numpy()
    ref_coords = None
    if on_reference and reference.cells is not None and "X_umap" in reference.cells.obsm:
        ref_coords = np.asarray(reference.cells.obsm["X_umap"])
    fig = figures.query_map(coords, values, hover, reference_coords=ref_coords, continuous=True)
    widgets.plot(fig, key="evidence_gene_map")
    n_open = int((values > 0).sum())
    st.caption(
        f"{n_open:,} of {len(values):,} cells have an open peak in {widgets.md(gene)}'s window."
    )


def _marker_table(
    dataset: LoadedDataset, genome: str, cluster: pd.Series, labels: pd.Series | None
) -> None:
    st.markdown("**Top marker regions** (Wilcoxon on the binarised peaks, one group vs the rest)")
    by = "cluster"
    if labels is not None:
        by = st.radio("Group the cells by", ["cluster", "transferred label"], horizontal=True,
                      key="evidence_marker_groupby")  # fmt: skip
    groups_of = cluster if by == "cluster" else labels
    markers = cached_markers(
        dataset.digest, _clusters_digest(groups_of), genome, dataset.adata, groups_of.to_numpy()
    )
    groups = [str(g) for g in markers["group"].cat.categories]
    chosen = st.selectbox(by.capitalize(), groups, key=f"{MARKER_CLUSTER_KEY}_{by}")
    rows = markers[markers["group"].astype(str) == chosen].head(20).copy()
    rows["UCSC"] = ucsc_links(rows, genome)
    st.dataframe(
        rows[
            [
                "rank",
                "region",
                "gene",
                "location",
                "tss_distance",
                "pct_in",
                "pct_out",
                "logfoldchange",
                "pval_adj",
                "UCSC",
            ]
        ],  # fmt: skip
        hide_index=True,
        column_config={
            "UCSC": st.column_config.LinkColumn("genome browser", display_text="UCSC"),
            "pct_in": st.column_config.NumberColumn("open in cluster", format="percent"),
            "pct_out": st.column_config.NumberColumn("open elsewhere", format="percent"),
            "logfoldchange": st.column_config.NumberColumn("log2 ratio", format="%.2f"),
            "pval_adj": st.column_config.NumberColumn("adjusted p", format="%.1e"),
            "tss_distance": st.column_config.NumberColumn("distance to TSS (bp)", format="%d"),
        },
        key="evidence_markers",
    )
    st.download_button(
        f"Download every {by}'s marker regions (CSV)",
        markers.to_csv(index=False).encode(),
        file_name="marker_regions.csv",
        mime="text/csv",
        key="evidence_markers_csv",
    )
