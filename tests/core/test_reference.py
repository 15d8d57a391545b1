"""Reference bundles (scembed_core.reference): round trip, integrity, no unpickling."""

import numpy as np
import pytest
from conftest import shifted_query

from scembed_core.errors import ReferenceBundleError
from scembed_core.project import project
from scembed_core.reference import load_bundle, save_reference


def test_bundle_round_trip_and_integrity(tmp_path, planted, planted_reference):
    folder = save_reference(planted_reference, tmp_path / "ref").path
    loaded = load_bundle(folder)
    np.testing.assert_array_equal(loaded.model.vectors, planted_reference.model.vectors)
    assert loaded.label_keys == ["cell_type"] and loaded.can_ev_project
    query = shifted_query(planted)
    a = project(query, planted_reference).umap
    b = project(query, loaded).umap
    np.testing.assert_allclose(a, b, atol=1e-4)
    (folder / "region_vectors.npy").write_bytes(
        (folder / "region_vectors.npy").read_bytes()[:-8] + b"\0" * 8
    )
    with pytest.raises(ReferenceBundleError, match="Checksum mismatch for region_vectors.npy"):
        load_bundle(folder)


def test_bundle_with_a_pickle_opens_without_trust_and_never_unpickles_it(
    tmp_path, planted, planted_reference
):
    """A previous-format bundle: its (here malicious) umap_model.joblib is never unpickled."""
    import json
    import pickle

    folder = save_reference(planted_reference, tmp_path / "ref").path
    assert not [p.name for p in folder.iterdir() if p.suffix in {".joblib", ".pkl"}]
    marker = tmp_path / "unpickled.marker"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "umap_model.joblib").write_bytes(pickle.dumps(Payload()))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["umap_model.joblib"] = "0" * 64  # not even a matching checksum
    del manifest["files"]["map.json"]  # as the previous format: no map.json
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "map.json").unlink()
    loaded = load_bundle(folder)  # no trust flag
    assert not marker.exists()
    assert loaded.can_ev_project and any("umap_model.joblib" in n for n in loaded.notes)
    coords = project(shifted_query(planted), loaded).umap
    assert np.isfinite(coords).all() and not marker.exists()
    save_reference(loaded, tmp_path / "ref")  # re-saving drops the pickle
    assert not (folder / "umap_model.joblib").exists() and (folder / "map.json").is_file()
    assert "umap_model.joblib" not in json.loads((folder / "manifest.json").read_text())["files"]
    assert not marker.exists()


def test_the_old_folder_loader_name_is_deprecated_and_the_suite_makes_that_an_error(
    tmp_path, planted_reference
):
    """reference.load_reference (the folder loader) is now load_bundle; the old name warns,
    and pytest's configuration turns our own deprecation warnings into errors."""
    import warnings

    from scembed_core.errors import ScEmbedDeprecationWarning
    from scembed_core.reference import load_reference

    folder = save_reference(planted_reference, tmp_path / "ref").path
    with pytest.raises(ScEmbedDeprecationWarning, match="load_bundle"):
        load_reference(folder)  # the suite's filter: error
    with pytest.warns(ScEmbedDeprecationWarning, match="scembed_core.load_reference"):
        loaded = load_reference(folder)
    assert loaded.fingerprint == load_bundle(folder).fingerprint
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # anyone else's deprecation would fail here too
        load_bundle(folder)
