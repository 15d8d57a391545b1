"""Train: build a reference from a labelled upload (Word2Vec on cells-as-documents)."""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

import dataclasses
import tempfile
from pathlib import Path

import streamlit as st

from scembed_app import cached, guards, results, state, widgets
from scembed_app.progress import progress_bar
from scembed_core.errors import ScEmbedError
from scembed_core.io import guess_label_key
from scembed_core.reference import bundle_to_zip_bytes, save_reference
from scembed_core.train import TrainingParams, build_reference, train_reference

st.title("Train")
st.caption(
    "Train your own reference: every cell is a document whose words are its accessible "
    "peaks; Word2Vec learns a vector per peak, cells are embedded, a kNN index is built "
    "and a UMAP map is fitted. The result can be used as the reference in this tab and "
    "downloaded as a bundle."
)
dataset = guards.require_dataset()
adata = dataset.adata
guessed = guess_label_key(adata)  # the cell-type column, never cluster ids
label_cols = results.label_columns(adata.obs)
if guessed is not None and guessed not in label_cols:
    label_cols = [guessed, *label_cols]
if not label_cols:
    st.info(
        "Training a reference needs cell-type labels: a column of `obs` with a few distinct "
        "values. The current dataset has none; upload a labelled dataset."
    )
    st.page_link(state.PAGE_DATA, label="Go to Data", icon=":material/upload_file:")
    state.stop_page()

ref_key, current = guards.require_reference()
region_only = current.cells is None


def default_genome() -> str:
    """The build to record: the file's own, else the reference's after a liftover, else the
    build the Data page detected (the demo is hg19 without saying so)."""
    declared = adata.uns.get("genome")
    if declared:
        return str(declared)
    if dataset.liftover:
        return str(current.genome)  # the cells were lifted onto the reference's build
    detection = cached.cached_build_detection(dataset.digest, ref_key, adata, current)
    return detection.build or "unknown"


if region_only:
    st.info(
        f"The current reference ({widgets.md(current.name)}) carries region vectors only. "
        "Choose *Use its region vectors* to build a full reference from your labelled data "
        "without training: your cells are embedded with its vectors, then a map is fitted and "
        "an index built, so new data can be placed and labelled."
    )

# --- form ----------------------------------------------------------------------------------------
with st.form("train_form"):
    mode = st.radio(
        "Region vectors",
        ["Train new ones on this dataset (Word2Vec)", "Use its region vectors"]
        if region_only
        else ["Train new ones on this dataset (Word2Vec)"],
        index=1 if region_only else 0,
        horizontal=True,
        key="train_mode",
    )
    reuse = mode == "Use its region vectors"
    left, right = st.columns(2)
    with left:
        name = st.text_input("Reference name", value="my-reference", max_chars=60)
        label_key = st.selectbox(
            "Label column",
            label_cols,
            index=label_cols.index(guessed) if guessed is not None else 0,
            help="The column of cell types the reference will transfer. Preselected: the "
            "column that looks like cell types (cluster ids are never proposed).",
        )
        genome = st.text_input(
            "Genome build", value=default_genome(), help="Detected from the peaks; edit if wrong."
        )
    with right:
        epochs = st.number_input(
            "Epochs",
            min_value=1,
            max_value=200,
            value=10,
            key="train_epochs",
            help="The paper uses 100.",
        )
        seed = st.number_input(
            "Seed",
            min_value=0,
            max_value=2**31 - 1,
            value=0,
            help="Seeds the corpus shuffling, Word2Vec's initialisation, the map and the index.",
        )
        reproducible = st.checkbox(
            "Bit-for-bit reproducible (one thread, about half the speed)",
            value=False,
            key="train_reproducible",
            help=(
                "Word2Vec trains with two threads by default. gensim's threads share the "
                "vectors without locks, so two runs with the same seed give slightly "
                "different vectors (labels usually agree). With one thread the same seed "
                "gives the same reference every time."
            ),
        )
    if guessed is None:
        st.caption(
            ":material/warning: No column looks like cell types (a name such as "
            "`cell_type`, `annotation` or `label`): check the label column."
        )
    st.caption(
        f"{adata.n_obs:,} cells, {adata.n_vars:,} peaks, {int(adata.X.nnz):,} words per epoch. "
        "The time per epoch depends on the server: it is measured on the first epoch and "
        "the bar then shows the time left. Word2Vec is followed by the kNN index, the map "
        "(nearest neighbours, fuzzy graph, spectral start, layout epochs) and the label "
        "classifier with its calibration."
    )
    submitted = st.form_submit_button("Train reference", type="primary")

# --- run ---------------------------------------------------------------------------------------
if submitted:
    safe_name = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip()) or "ref"
    with st.status(f"Training {safe_name}...", expanded=True) as status:
        bar = st.progress(0.0, text="Starting")
        try:
            if reuse:
                reference = build_reference(
                    current.model,
                    adata,
                    label_key=label_key,
                    genome=current.genome,
                    name=safe_name,
                    source=f"{dataset.name} embedded with {current.name}",
                    seed=int(seed),
                    progress=progress_bar(bar),
                )
            else:
                reference = train_reference(
                    adata,
                    label_key=label_key,
                    params=TrainingParams(
                        epochs=int(epochs), seed=int(seed), workers=1 if reproducible else 2
                    ),
                    genome=genome.strip() or "unknown",
                    name=safe_name,
                    source=dataset.name,
                    progress=progress_bar(bar),
                )
            bar.progress(1.0, text="Packing the bundle (zip) for download")
            status.update(label="Packing the bundle...")
            with tempfile.TemporaryDirectory(prefix="scembed-train-") as tmp:
                saved = save_reference(reference, Path(tmp) / safe_name)
                bundle = bundle_to_zip_bytes(saved.path)
            # the folder is gone (the bundle lives in the zip); the manifest now lists the
            # sha256 of every file, so the fingerprint covers the labels it was built from
            reference = dataclasses.replace(saved, path=None)
        except ScEmbedError as exc:
            status.update(label="Training failed", state="error")
            widgets.show_engine_error(exc, hint="Check the label column and the data.")
            state.stop_page()
        st.session_state[state.TRAINED][safe_name] = state.TrainedReference(
            name=safe_name,
            # Cached results of every session are keyed on this: the fingerprint hashes
            # the bundle's per-file sha256 map (cells, labels, vectors, map, index), so two
            # references built under one name from different data never share an entry.
            key=f"trained:{safe_name}:{reference.fingerprint}",
            reference=reference,
            label_key=label_key,
            params={
                "epochs": 0 if reuse else int(epochs),
                "seed": int(seed),
                "reproducible": bool(reproducible or reuse),
            },
            bundle_zip=bundle,
        )
        status.update(label=f"Trained {safe_name}", state="complete", expanded=False)

# --- trained references of this tab --------------------------------------------------------------
trained = st.session_state[state.TRAINED]
if not trained:
    state.stop_page()
st.subheader("References trained in this tab")
for item in trained.values():
    with st.container(border=True):
        ref = item.reference
        st.markdown(
            f"**{widgets.md(item.name)}**: {ref.n_cells:,} cells, {ref.n_regions:,} regions, "
            f"labels from {widgets.md(item.label_key)}, "
            + (
                f"{item.params['epochs']} epochs"
                if item.params["epochs"]
                else "region vectors reused (no training)"
            )
        )
        use_col, download_col = st.columns(2)
        active = st.session_state[state.REFERENCE_SPEC] == f"session:{item.name}"
        if use_col.button(
            "In use" if active else "Use as reference",
            key=f"use_{item.name}",
            disabled=active,
            icon=":material/hub:",
        ):
            st.session_state[state.REFERENCE_SPEC] = f"session:{item.name}"
            st.session_state[state.LABEL_KEY] = None
            st.rerun()
        if item.bundle_zip is not None:
            download_col.download_button(
                "Download bundle (.zip)",
                data=item.bundle_zip,
                file_name=f"{item.name}.zip",
                mime="application/zip",
                key=f"download_{item.name}",
                icon=":material/download:",
                on_click="ignore",
            )
