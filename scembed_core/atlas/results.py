"""Reading a finished store back: a sample of its per-cell results, for plotting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ParameterError


def open_result(zarr_path: str | Path, *, max_points: int = 50_000, seed: int = 0) -> pd.DataFrame:
    """Return a random sample of a store's per-cell results, for plotting (reads only those).

    Parameters
    ----------
    zarr_path
        An output store of :func:`project_out_of_core`.
    max_points
        At most this many cells (uniform random, in store order); all cells if fewer.
    seed
        Seeds the subsample.

    Returns
    -------
    pandas.DataFrame
        Indexed by cell name: ``umap_1``/``umap_2`` (when EV-projected) and every
        ``scembed_*`` obs column (categoricals keep their categories).
        ``frame.attrs["n_cells"]`` is the number of cells in the store and
        ``frame.attrs["n_shown"]`` the number of rows returned.
    """
    import zarr
    from anndata.io import read_elem

    if max_points < 1:
        raise ParameterError(f"max_points must be >= 1, got {max_points}.")
    root = zarr.open_group(str(zarr_path), mode="r")
    obs = root["obs"]
    names = obs[obs.attrs.get("_index", "_index")]
    n = int(names.shape[0])
    rng = np.random.default_rng(seed)
    rows = np.arange(n) if n <= max_points else np.sort(rng.choice(n, max_points, replace=False))
    frame = pd.DataFrame(index=pd.Index(np.asarray(names.oindex[rows]).astype(object), name="cell"))
    if "X_scembed_umap" in root["obsm"]:
        coords = np.asarray(root["obsm/X_scembed_umap"].oindex[rows, :])
        frame["umap_1"], frame["umap_2"] = coords[:, 0], coords[:, 1]
    for column in obs.attrs.get("column-order", []):
        if not str(column).startswith("scembed_") or column not in obs:
            continue
        node = obs[column]
        if node.attrs.get("encoding-type") == "categorical":
            categories = read_elem(node["categories"])
            codes = np.asarray(node["codes"].oindex[rows])
            frame[column] = pd.Categorical.from_codes(codes, categories=categories)
        else:
            frame[column] = np.asarray(node.oindex[rows])
    frame.attrs["n_cells"] = n
    frame.attrs["n_shown"] = len(rows)
    return frame
