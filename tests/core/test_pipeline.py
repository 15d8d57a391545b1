"""run_pipeline and its written output (scembed_core.pipeline)."""

import pandas as pd
from conftest import shifted_query

from scembed_core.pipeline import annotated_adata, run_pipeline, write_results


def test_annotated_output_keys(tmp_path, planted, planted_reference):
    query = shifted_query(planted)
    result = run_pipeline(query, planted_reference, n_clusters=4, truth_key="cell_type")
    out = annotated_adata(result)
    for key in ("X_scembed", "X_scembed_umap"):
        assert key in out.obsm
    for column in (
        "scembed_cluster",
        "scembed_label",
        "scembed_label_confidence",
        "scembed_cluster_label",
        "scembed_mapping_distance",
    ):
        assert column in out.obs
    assert result.evaluation["labels"]["accuracy"] >= 0.9
    assert result.evaluation["clustering"]["ari"] >= 0.7
    paths = write_results(result, tmp_path / "out.h5ad", csv=True)
    frame = pd.read_csv(paths[1], index_col=0)
    assert len(frame) == query.n_obs and {"scembed_label", "scembed_umap_1"} <= set(frame.columns)
