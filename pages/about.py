"""About: the method, where the data come from, and links."""

from scembed_app import router

router.start_page()  # first: hands over to the router when run alone

import streamlit as st

from scembed_app import cached, catalog, deployment, retention, state, widgets
from scembed_core.errors import ScEmbedError

st.title("About scEmbed")

st.markdown(
    f"""
**scEmbed** learns embeddings of genomic regions from single-cell ATAC-seq data and uses
them to cluster and annotate new cells without retraining
([LeRoy et al., NAR Genomics and Bioinformatics 2024]({catalog.PAPER_URL})).

1. **Cells as documents.** Each reference cell is a "document" whose "words" are the
   genomic regions where it has accessible chromatin. Word2Vec learns a vector per region
   from which regions are accessible together.
2. **E-projection.** A new cell's peaks are matched to the regions they overlap in the
   reference universe, and the cell's embedding is the mean of those regions' vectors.
   No retraining is involved, so projection takes seconds.
3. **EV-projection.** The reference cells' embeddings were laid out with UMAP; UMAP's
   transform (fuzzy weights to the nearest reference cells, a start at their weighted mean,
   then attraction/repulsion against the fixed reference) places the new cells on that map.
4. **Clustering and annotation.** Query cells are clustered by Louvain on their kNN graph.
   Each cell gets the majority label of its nearest reference cells (cosine), with a
   confidence (the share of the vote). Cells with low confidence, or that lie far from
   every reference cell, are left *Unassigned*.
"""
)

st.subheader("Workflow")
st.markdown(
    "Pick a **Reference**, load your **Data** and check the coverage, **Project** the "
    "cells, tune the **Clusters**, review the **Annotation** (scored against your own "
    "labels if you have them) and **Export** the results. **Train** builds a reference "
    "from a labelled dataset of your own."
)

st.subheader("Data provenance")
try:
    ref_key, reference = cached.active_reference()
except ScEmbedError as exc:
    st.warning(f"The current reference could not be loaded: {widgets.engine_message(exc)}")
else:
    manifest = reference.manifest
    st.markdown(
        f"- **Current reference:** {widgets.md(reference.name)} ({widgets.md(reference.genome)}), "
        f"{reference.n_cells:,} cells, {reference.n_regions:,} regions."
        + (
            f" Source: {deployment.public_text(str(manifest['source']))}."
            if manifest.get("source")
            else ""
        )
    )
st.markdown(
    """
- **Built-in reference and demo dataset:** healthy human bone-marrow mononuclear cells
  (10x Genomics scATAC-seq, hg19) from Granja *et al.*, "Single-cell multiomic analysis
  identifies regulatory programs in mixed-phenotype acute leukemia", *Nature
  Biotechnology* 37, 1458-1465 (2019), GEO GSE139369, with the study's cell-type labels.
  The copy used here has 10,000 randomly chosen peaks of the study's peak set, via the
  epiCHAOS R package's data (MIT licence). Reference and demo cells are disjoint.
- **Hub models** are published by the scEmbed authors (Databio lab) on the Hugging Face
  hub; each model card gives its training data.
"""
)

st.subheader("Your data on this server")
retention.section()

st.subheader("Links")
st.markdown(
    f"""
- Paper: [{catalog.PAPER_URL}]({catalog.PAPER_URL}) (preprint: [{catalog.PREPRINT_URL}]({catalog.PREPRINT_URL}))
- Original implementation (geniml): [{catalog.GENIML_URL}]({catalog.GENIML_URL})
- Pretrained models: [{catalog.HUB_URL}]({catalog.HUB_URL})
"""
)
st.page_link(state.PAGE_REFERENCE, label="Start with a reference", icon=":material/hub:")
