"""scEmbed models known to be on the Hugging Face hub (shown by the app's Reference page)."""

from __future__ import annotations

#: scEmbed models published by the geniml authors (databio) on the hub. Repository names
#: are from the hub's model list; none is pinned here, so pin a revision when you use one.
KNOWN_HUB_MODELS: tuple[dict[str, str], ...] = (
    {
        "repo_id": "databio/r2v-luecken2021-hg38-v2",
        "genome": "hg38",
        "description": "Luecken 2021 bone-marrow multiome (~120k cells); 116,492 regions, "
        "100 dimensions; has model.safetensors. The geniml tutorials' reference.",
    },
    {
        "repo_id": "databio/r2v-buenrostro2018-hg19",
        "genome": "hg19",
        "description": "Buenrostro 2018 human hematopoiesis scATAC-seq, the paper's "
        "benchmark and projection reference.",
    },
    {
        "repo_id": "databio/r2v-10x-pbmc-5k-hg19",
        "genome": "hg19",
        "description": "10x Genomics PBMC 5k scATAC-seq (the paper's projection query).",
    },
    {
        "repo_id": "databio/r2v-scatlas-hg38-v2",
        "genome": "hg38",
        "description": "Single-cell ATAC atlas region2vec model.",
    },
    {
        "repo_id": "databio/r2v-mouse-atlas-mm9-v2",
        "genome": "mm9",
        "description": "Mouse scATAC atlas region2vec model.",
    },
)
