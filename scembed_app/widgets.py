"""Shared UI pieces: error display, sidebar summary, the map explorer fragment."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from scembed_app import deployment, figures, results, state
from scembed_app.uploads import LoadedDataset

PLOTLY_CONFIG = {"displaylogo": False, "scrollZoom": True}
#: What a chart's camera button saves: made by plotly.js in the browser (hosted too).
FIGURE_FORMATS = {"png": "PNG (4x, for print)", "svg": "SVG (vector)"}
#: PNG scale factor: a 900-pixel-wide chart saves 3,600 pixels wide (300 dpi at 12 inches).
PNG_SCALE = 4


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$])")


def md(text: object) -> str:
    """Escape user-provided text (file names, labels) for use inside st.markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


#: The manifest's key facts on the Reference page: (label, key path) in display order.
PROVENANCE_FACTS = (
    ("Name", ("name",)),
    ("Genome build", ("genome",)),
    ("Source", ("source",)),
    ("Cells", ("n_cells",)),
    ("Regions", ("n_regions",)),
    ("Embedding dimensions", ("embedding_dim",)),
    ("Word2Vec window", ("training", "window")),
    ("Word2Vec epochs", ("training", "epochs")),
    ("Seed", ("training", "seed")),
    ("Build time (s)", ("build_seconds",)),
    ("Library", ("library_version",)),
)


def provenance_table(manifest: dict) -> str:
    """The manifest's key facts as a two-column Markdown table (missing facts left out).

    Values are escaped for Markdown (a bundle's text is not trusted to format the page).
    """
    rows = []
    for label, path in PROVENANCE_FACTS:
        value: Any = manifest
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or isinstance(value, dict | list):
            continue
        if isinstance(value, float):
            value = f"{value:,.1f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        rows.append(f"| {label} | {md(str(value).replace(chr(10), ' '))} |")
    if not rows:
        return "No provenance recorded."
    return "| | |\n|:--|:--|\n" + "\n".join(rows)


def engine_message(exc: BaseException) -> str:
    """An engine error's message as the visitor may see it (no server paths when hosted).

    Errors whose engine message advises the command line get the app's own advice.
    """
    from scembed_core.errors import HubUnavailableError

    if isinstance(exc, HubUnavailableError) and exc.repo_id:
        folder = "" if deployment.is_hosted() else ", a folder on this computer"
        reason = f" ({exc.reason})" if exc.reason else ""
        return deployment.public_text(
            f"The Hugging Face hub could not be reached for {exc.repo_id}{reason}, and this "
            "server has no copy of it. Try again later, or choose the built-in reference"
            f"{folder} or a reference trained in this tab on the Reference page."
        )
    return deployment.public_text(str(exc))


def show_engine_error(exc: BaseException, *, hint: str | None = None) -> None:
    """Show an engine error as one message (never a traceback) plus what to do next."""
    st.error(engine_message(exc), icon=":material/error:")
    if hint:
        st.caption(hint)


def bound(state_key: str) -> dict[str, Any]:
    """Widget kwargs that keep a widget in sync with a session-state value across pages.

    Streamlit drops a widget's own state when a page without it runs; the value lives
    under ``state_key`` and the widget (key ``w_<state_key>``) is re-seeded from it.
    """
    widget_key = f"w_{state_key}"
    if widget_key not in st.session_state:
        st.session_state[widget_key] = st.session_state[state_key]

    def sync() -> None:
        st.session_state[state_key] = st.session_state[widget_key]

    return {"key": widget_key, "on_change": sync}


def take_upload(key: str, max_bytes: int) -> None:
    """The Data page uploader's ``on_change``: store a new upload on disk, release its bytes.

    A callback runs before the script, so before ``st.file_uploader`` returns its deep copy
    of the files (a second copy of the upload, beside Streamlit's store): the bytes are
    written to a private folder (:func:`scembed_app.uploads.spool_uploads`) and released
    here, and the page parses the folder (``state.PENDING_UPLOAD``) with nothing else of
    the upload in memory. A possible fragments file stays in the uploader: the QC's TSS
    enrichment reads its bytes. Only files not read before are taken (a file added to
    the uploader later is read alone; a failed one is not read again).
    """
    from scembed_app.memory import release_freed_memory
    from scembed_app.uploads import may_be_fragments, spool_uploads
    from scembed_core.errors import ScEmbedError

    current = st.session_state.get(key) or []
    ids = tuple(f.file_id for f in current)
    files = [f for f in current if isinstance(f, UploadedFile)]
    if not files or ids == st.session_state.get(state.UPLOAD_IDS):
        return
    st.session_state[state.UPLOAD_IDS] = ids
    st.session_state[state.UPLOAD_ERROR] = None
    previous = st.session_state.get(state.PENDING_UPLOAD)
    if previous is not None:  # stored by a run that was stopped before it read it
        previous.discard()
    st.session_state[state.PENDING_UPLOAD] = None
    names = [f.name for f in files]
    try:
        spool = spool_uploads([(f.name, f.getvalue()) for f in files], max_bytes=max_bytes)
        st.session_state[state.PENDING_UPLOAD] = spool
    except ScEmbedError as exc:
        st.session_state[state.UPLOAD_ERROR] = engine_message(exc)
        names = []  # refused: released whatever it is
    del files
    if not may_be_fragments(names):
        release_uploads(key)
        release_freed_memory()


def release_uploads(key: str) -> None:
    """Drop the uploader's files from Streamlit's upload store and from its cached value.

    Streamlit keeps an upload's bytes in its upload store and in the uploader's value
    cached in the session (sharing the store's bytes); the list ``st.file_uploader``
    returns is a deep copy with bytes of its own, which the caller drops. The cached
    files are emptied in place, so the uploader keeps its files' names and ids (the
    browser still shows them) but no bytes.
    """
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    manager = getattr(ctx, "uploaded_file_mgr", None)
    for file in st.session_state.get(key) or []:
        if manager is not None:
            manager.remove_file(session_id=ctx.session_id, file_id=file.file_id)
        if isinstance(file, UploadedFile):
            file.truncate(0)  # shared the store's bytes


def plot_config(name: str | None = None) -> dict:
    """Plotly's config: the camera button saves PNG (4x) or SVG, as the sidebar says."""
    fmt = st.session_state.get(state.FIGURE_FORMAT) or "png"
    image = {"format": fmt, "filename": name or "scembed_figure", "scale": PNG_SCALE}
    if fmt == "svg":
        image["scale"] = 1  # vector: the size is the chart's own
    return {**PLOTLY_CONFIG, "toImageButtonOptions": image}


def plot(fig: Any, *, key: str | None = None) -> None:
    """``st.plotly_chart`` with the app's defaults (camera button: PNG or SVG, in the browser)."""
    st.plotly_chart(fig, key=key, config=plot_config(key), theme=None)


def figure_format_choice() -> None:
    """The sidebar's "Save figures as" choice (every chart's camera button follows it)."""
    with st.sidebar:
        st.segmented_control(
            "Save figures as",
            list(FIGURE_FORMATS),
            format_func=lambda f: f.upper(),
            help="The camera icon at the top right of every chart saves it: PNG at 4x the "
            "screen size (print resolution) or SVG (vector). The image is made in your "
            "browser. The Export page offers every figure at once.",
            **bound(state.FIGURE_FORMAT),
        )


def sidebar_summary() -> None:
    """Where this tab stands: reference, dataset, projection (drawn by the router)."""
    from scembed_app.cached import active_reference
    from scembed_app.quickref import quick_summary
    from scembed_core.errors import ScEmbedError

    spec = st.session_state.get(state.REFERENCE_SPEC, "default")
    dataset = st.session_state.get(state.DATASET)
    run = st.session_state.get(state.PROJECTION)
    summary = quick_summary(spec)  # the built-in reference's name without loading it
    try:
        reference_name = summary.name if summary is not None else active_reference()[1].name
    except ScEmbedError:
        reference_name = deployment.public_text(f"{spec.removeprefix('session:')} (not loaded)")
    figure_format_choice()
    with st.sidebar:
        st.caption("This session")
        st.markdown(f":material/hub: Reference: {md(_short(reference_name, 40))}")
        if dataset is None:
            st.markdown(":material/upload_file: Data: none yet")
        else:
            st.markdown(
                f":material/upload_file: Data: {dataset.adata.n_obs:,} cells "
                f"({md(_short(dataset.name))})"
            )
        if run is None:
            st.markdown(":material/scatter_plot: Not projected")
        else:
            st.markdown(
                f":material/scatter_plot: Projected {run.n_projected:,} cells in {run.seconds:.1f} s"
            )


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _color_values(
    choice: str,
    dataset: LoadedDataset,
    cluster: pd.Series,
    transferred: pd.DataFrame | None,
    lineage_of: dict | None = None,
) -> tuple[pd.Series, bool | None]:
    if choice == "Cluster":
        return cluster.rename("cluster"), False
    if choice == "Transferred label" and transferred is not None:
        return transferred["label"].rename("label"), False
    if choice == "Lineage" and transferred is not None:
        from scembed_core.lineage import to_lineages

        lineage = to_lineages(transferred["label"], lineage_of or {})
        return pd.Series(lineage, index=transferred.index, name="lineage"), False
    if choice == "Confidence" and transferred is not None:
        return transferred["confidence"].astype(float).rename("confidence"), True
    values = dataset.adata.obs[choice]
    numeric = pd.api.types.is_numeric_dtype(values) and values.nunique() > 24
    return values.rename(choice), numeric


@st.fragment
def map_explorer(
    run: state.ProjectionRun,
    dataset: LoadedDataset,
    reference: Any,
    *,
    coords: np.ndarray,
    on_reference: bool,
    key: str,
) -> None:
    """A query map with a 'colour by' selector that reruns only this fragment."""
    obs = dataset.adata.obs
    cluster = results.current_clusters(run, dataset)
    transferred = results.labels(run, reference, obs.index)
    options = ["Cluster"]
    lineage_of = results.lineages(reference) if transferred is not None else {}
    if transferred is not None:
        options += ["Transferred label", "Lineage", "Confidence"]
        if not lineage_of:
            options.remove("Lineage")
    options += [c for c in results.color_columns(obs) if c not in options]
    choice = st.selectbox("Colour query cells by", options, key=f"{key}_color_by")
    color, continuous = _color_values(choice, dataset, cluster, transferred, lineage_of)
    hover = results.hover_fields(obs.index, cluster, transferred)
    ref_coords = None
    if on_reference and reference.cells is not None and "X_umap" in reference.cells.obsm:
        ref_coords = np.asarray(reference.cells.obsm["X_umap"])
    fig = figures.query_map(
        coords,
        color,
        hover,
        reference_coords=ref_coords,
        continuous=continuous,
        colors=results.chart_colors(reference),
    )
    plot(fig, key=f"{key}_chart")
    n_missing = int((~np.isfinite(np.asarray(coords, float)).all(axis=1)).sum())
    if n_missing:
        st.caption(f"{n_missing:,} cells without a position (no region in the universe).")


def trust_checkbox(help_text: str, *, key: str) -> bool:
    """The "I trust this source" box, shown only where the server operator allows it."""
    if not state.trust_allowed():
        how = (
            "They stay off on a public deployment."
            if deployment.is_hosted()
            else "The operator can allow them with `SCEMBED_ALLOW_TRUST=1`."
        )
        st.caption(
            ":material/lock: Pickled reference parts are disabled on this server; models "
            f"without pickles load as usual. {how}"
        )
        return False
    return st.checkbox("I trust this source", help=help_text, key=key)
