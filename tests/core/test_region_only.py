"""Region-only models (e.g. geniml models from the hub): E-projection, then a full reference."""

from pathlib import Path

import numpy as np

from scembed_core.labels.assign import assign_labels
from scembed_core.pipeline import run_pipeline
from scembed_core.project import compute_coverage, embed_cells, project
from scembed_core.reference import resolve_reference
from scembed_core.train import build_reference

GENIML_TINY = Path(__file__).parents[1] / "data" / "geniml_tiny"


def test_geniml_folder_e_projects_real_cells(granja):
    reference = resolve_reference(GENIML_TINY)
    assert not reference.can_ev_project and not reference.can_transfer_labels
    cells = granja[:400]
    coverage = compute_coverage(cells, reference)
    assert 0 < coverage.mapping.n_mapped_peaks < cells.n_vars
    embedding = embed_cells(coverage, reference.model)
    # direct numpy: mean of the trained vectors of the regions each cell's peaks overlap
    regions = coverage.cell_regions.toarray().astype(bool) & reference.model.trained
    for i in np.flatnonzero(regions.any(axis=1))[:50]:
        np.testing.assert_allclose(
            embedding[i], reference.model.vectors[regions[i]].mean(axis=0), rtol=1e-5, atol=1e-6
        )
    assert np.isnan(embedding[~regions.any(axis=1)]).all()
    # the pipeline runs without labels or a map: clusters only
    result = run_pipeline(cells, reference)
    assert result.labels is None and result.umap is None


def test_full_reference_from_region_model(planted, planted_reference):
    rebuilt = build_reference(planted_reference.model, planted[:240], label_key="cell_type")
    assert rebuilt.can_ev_project and rebuilt.can_transfer_labels
    query = planted[240:]
    result = project(query, rebuilt)
    labels = assign_labels(result.embedding, rebuilt, method="knn")
    assert (labels["label"].to_numpy() == query.obs["cell_type"].to_numpy()).mean() >= 0.9
