"""Word2Vec training of region embeddings: cells are documents, accessible regions are words.

This is scEmbed's *no-projection* flow (paper, Methods "Presenting cells as documents to
Word2Vec"): every cell becomes a list of the regions where it shows signal, the lists
are reshuffled before every epoch (co-accessible regions have no order), and gensim's
Word2Vec learns one vector per region. The learning rate decays exponentially per epoch.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ._corpus import (
    GENSIM_MAX_DOCUMENT_WORDS,  # noqa: F401  (re-exported)
    ShuffledCorpus,
    documents_from_matrix,
    stable_hash,
)
from ._progress import Stages
from ._types import ProgressCallback
from .errors import ParameterError, TrainingError
from .mapfit import fit_reference_umap
from .regions import GenomicRegions, binary_signal

if TYPE_CHECKING:
    import anndata as ad

    from .model import RegionModel
    from .reference import Reference

__all__ = [
    "TrainingParams",
    "train_region_vectors",
    "documents_from_matrix",
    "fit_reference_umap",
    "train_reference",
    "build_reference",
]

#: Stages of :func:`build_reference` and their shares of its progress bar, in order.
#: The map is fitted beside the label stages (see :func:`build_reference`), its stage last.
BUILD_STAGES = {
    "embed": (0.05, "Embedding the reference cells"),
    "index": (0.05, "Building the kNN index"),
    "classifier": (0.2, "Label classifier"),
    "distances": (0.05, "Measuring mapping distances"),
    "unknown": (0.15, "Calibrating the Unknown rule"),
    "map": (0.5, "Fitting the reference map"),
}


@dataclass(frozen=True)
class TrainingParams:
    """Word2Vec hyper-parameters; the defaults are the paper's.

    Parameters
    ----------
    vector_size
        Embedding dimension (paper: 100).
    window
        Context window (paper: 5).
    epochs
        Passes over the shuffled documents (paper: 100).
    alpha
        Initial learning rate (geniml's default 0.1; decays by ``lr_decay`` per epoch).
    lr_decay
        Multiplicative decay of the learning rate per epoch (paper: 0.95).
    min_alpha
        Floor of the learning rate.
    min_count
        Regions seen in fewer cells are not trained and never used for pooling.
    sg
        1 for skip-gram, 0 for CBOW (gensim's default, ~4x faster here).
    negative
        Negative samples per positive pair.
    workers
        gensim worker threads. With more than one, training is not reproducible bit for
        bit even with a fixed ``seed`` (gensim's threads update shared vectors without
        locks and in an order the OS decides); use ``workers=1`` for that.
    seed
        Seed of gensim's initialisation and of the per-epoch shuffles (fully determines
        the result only with ``workers=1``).
    """

    vector_size: int = 100
    window: int = 5
    epochs: int = 100
    alpha: float = 0.1
    lr_decay: float = 0.95
    min_alpha: float = 1e-4
    min_count: int = 5
    sg: int = 0
    negative: int = 5
    workers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "vector_size": self.vector_size >= 2,
            "window": self.window >= 1,
            "epochs": self.epochs >= 1,
            "alpha": self.alpha > 0,
            "lr_decay": 0 < self.lr_decay <= 1,
            "min_count": self.min_count >= 1,
            "sg": self.sg in (0, 1),
            "workers": self.workers >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ParameterError(
                f"Invalid training parameter(s) {bad}: { ({k: getattr(self, k) for k in bad}) }."
            )

    def learning_rate(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based) under the exponential schedule."""
        return max(self.alpha * self.lr_decay**epoch, self.min_alpha)

    def to_dict(self) -> dict:
        """Parameters as a plain dictionary (for manifests)."""
        return asdict(self)


def train_region_vectors(
    cells_by_regions: sp.spmatrix,
    universe: GenomicRegions,
    params: TrainingParams | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Learn one embedding per universe region with gensim Word2Vec.

    Parameters
    ----------
    cells_by_regions
        Binary cells x regions matrix over ``universe`` (signal = value > 0).
    universe
        The regions (columns); region ``i`` becomes word ``str(i)``.
    params
        Hyper-parameters; the paper's defaults when omitted.
    progress
        Called as ``progress(fraction, message)`` before the vocabulary pass and after
        every epoch, with the seconds per epoch measured so far.

    Returns
    -------
    vectors
        ``(n_regions, vector_size)`` float32; rows of untrained regions are zero.
    trained
        Boolean mask of regions that received a learned vector (seen in at least
        ``min_count`` cells); untrained regions are excluded from pooling.
    stats
        Training statistics: words per epoch, seconds, words per second, regions trained.
    """
    from gensim.models import Word2Vec

    params = params or TrainingParams()
    x = binary_signal(cells_by_regions)
    if x.shape[1] != len(universe):
        raise TrainingError(
            f"The matrix has {x.shape[1]} regions but the universe has {len(universe)}."
        )
    n_words = int(x.nnz)
    if n_words == 0 or int((np.diff(x.indptr) >= 2).sum()) == 0:
        raise TrainingError(
            "No cell has two or more accessible regions; Word2Vec needs co-accessible regions."
        )
    from .stopping import check_stop, stop_asker

    check_stop("Word2Vec training")
    corpus = ShuffledCorpus(x, params.seed, stop_asker())
    model = Word2Vec(
        vector_size=params.vector_size,
        window=params.window,
        min_count=params.min_count,
        sg=params.sg,
        negative=params.negative,
        workers=params.workers,
        seed=params.seed,
        alpha=params.alpha,
        min_alpha=params.min_alpha,
        hashfxn=stable_hash,
    )
    report = progress or (lambda fraction, message: None)
    report(0.0, f"building the vocabulary of {x.shape[1]:,} regions")
    model.build_vocab(corpus)
    check_stop("Word2Vec training")
    if not model.wv.key_to_index:
        raise TrainingError(
            f"No region was seen in at least min_count={params.min_count} cells; "
            "lower min_count or provide more cells."
        )
    started = time.perf_counter()
    for epoch in range(params.epochs):
        check_stop("Word2Vec training")  # between epochs; an epoch ends early when asked
        rate = params.learning_rate(epoch)
        model.train(
            corpus,
            total_examples=model.corpus_count,
            epochs=1,
            start_alpha=rate,
            end_alpha=rate,
        )
        check_stop("Word2Vec training")
        per_epoch = (time.perf_counter() - started) / (epoch + 1)  # measured, never assumed
        report(
            (epoch + 1) / params.epochs,
            f"epoch {epoch + 1}/{params.epochs} ({per_epoch:.1f} s per epoch)",
        )
    seconds = time.perf_counter() - started

    vectors = np.zeros((len(universe), params.vector_size), dtype=np.float32)
    keys = np.fromiter((int(k) for k in model.wv.index_to_key), dtype=np.int64)
    vectors[keys] = model.wv.vectors
    trained = np.zeros(len(universe), dtype=bool)
    trained[keys] = True
    stats = {
        "words_per_epoch": n_words,
        "seconds": seconds,
        "seconds_per_epoch": seconds / params.epochs,
        "words_per_second": n_words * params.epochs / seconds if seconds > 0 else float("nan"),
        "n_regions_trained": int(trained.sum()),
        "n_regions_untrained": int((~trained).sum()),
        "n_documents": int(model.corpus_count),
    }
    return vectors, trained, stats


def train_reference(
    adata: ad.AnnData,
    *,
    label_key: str | list[str] | None = None,
    params: TrainingParams | None = None,
    genome: str = "unknown",
    name: str = "reference",
    source: str = "",
    fit_umap: bool = True,
    progress: ProgressCallback | None = None,
) -> Reference:
    """Train a full reference from a labelled dataset (the paper's no-projection flow).

    Trains Word2Vec region embeddings on the dataset's own peaks (the universe), embeds
    the cells, fits the reference UMAP, builds the cosine kNN index and records the
    distribution of reference-to-reference neighbour distances (for mapping distance).

    Parameters
    ----------
    adata
        Cells x peaks with ``var`` coordinates (see :func:`scembed_core.io.read_dataset`).
    label_key
        obs column(s) holding cell-type labels to transfer later.
    params
        Word2Vec parameters.
    genome, name, source
        Recorded in the manifest.
    fit_umap
        Fit the UMAP map (needed for EV-projection).
    progress
        ``progress(fraction, message)``: Word2Vec epochs (with the time left measured on
        the epochs done), then every stage of :func:`build_reference`.

    Returns
    -------
    :class:`scembed_core.reference.Reference`
    """
    from .model import RegionModel
    from .project import regions_of

    params = params or TrainingParams()
    _label_keys(adata, label_key)
    universe = regions_of(adata).validate("peaks")
    stages = Stages(progress, {"word2vec": (0.6, "Word2Vec"), "reference": (0.4, "")})
    vectors, trained, stats = train_region_vectors(
        adata.X, universe, params, progress=stages.stage("word2vec")
    )
    start, span, _ = stages.spans["reference"]
    report = stages.report
    model = RegionModel(
        universe, vectors, trained, {"genome": genome, "training": params.to_dict()}
    )
    reference = build_reference(
        model,
        adata,
        label_key=label_key,
        genome=genome,
        name=name,
        source=source,
        fit_umap=fit_umap,
        seed=params.seed,
        progress=lambda f, m: report(start + span * f, m),
    )
    return dataclasses.replace(
        reference,
        manifest={**reference.manifest, "training": params.to_dict(), "training_stats": stats},
    )


def _label_keys(adata: ad.AnnData, label_key: str | list[str] | None) -> list[str]:
    keys = [label_key] if isinstance(label_key, str) else list(label_key or [])
    missing = [k for k in keys if k not in adata.obs]
    if missing:
        raise ParameterError(
            f"Label column(s) {missing} not in obs; found {list(adata.obs.columns)}."
        )
    return keys


def build_reference(
    model: RegionModel,
    adata: ad.AnnData,
    *,
    label_key: str | list[str] | None = None,
    genome: str | None = None,
    name: str = "reference",
    source: str = "",
    fit_umap: bool = True,
    whiten_components: int = 20,
    seed: int = 0,
    label_model: bool | object = True,
    progress: ProgressCallback | None = None,
) -> Reference:
    """Make a full reference from region embeddings and a labelled dataset.

    The dataset's cells are E-projected with ``model`` (its peaks are mapped onto the
    model's universe, so any region model works, e.g. a geniml model from the hub), then
    the reference UMAP is fitted, the cosine kNN index built, and the distribution of
    reference-to-reference neighbour distances recorded (for mapping distance).

    Parameters
    ----------
    model
        :class:`scembed_core.model.RegionModel` (trained here or loaded).
    adata
        Labelled cells x peaks with ``var`` coordinates.
    label_key
        obs column(s) holding the labels to transfer later.
    genome, name, source
        Recorded in the manifest (``genome`` defaults to the model's).
    fit_umap
        Fit the UMAP map (needed for EV-projection).
    whiten_components
        Principal components kept by the whitening of the analysis space (0: none); see
        :class:`scembed_core.model.Whitening`.
    seed
        Seed of the kNN index and of the label classifier's calibration hold-out (the
        UMAP uses the paper's ``random_state=42``).
    label_model
        Fit the label classifier on the first label key (True: default
        :class:`~scembed_core.labels.classifier.LabelModelParams`; or pass such parameters;
        False: none, labels then come from the kNN vote), with its held-out calibration.
    progress
        ``progress(fraction, message)`` callback.

    Returns
    -------
    :class:`scembed_core.reference.Reference`
    """
    import anndata as ad

    from .knn import build_cell_index, index_ef_construction, knn_query_all_threads
    from .labels.vote import LEGACY_MAPPING_DISTANCE_K, self_mapping_distances
    from .model import Whitening
    from .project import compute_coverage, embed_cells
    from .reference import Reference
    from .stopping import check_stop

    keys = _label_keys(adata, label_key)
    genome = genome or model.metadata.get("genome") or "unknown"
    map_job = None  # the map's thread, once started (its progress shown beside the labels')

    def report(fraction: float, message: str) -> None:
        beside = map_job.latest() if map_job else None
        if beside and not message.startswith(BUILD_STAGES["map"][1]):
            message = f"{message} · map: {beside}"
        if progress is not None:
            progress(fraction, message)

    stages = Stages(report, BUILD_STAGES)
    stages.stage("embed", f"{adata.n_obs:,} cells")
    coverage = compute_coverage(adata, model)
    embedding = embed_cells(coverage, model)
    keep = np.isfinite(embedding).all(axis=1)
    if keep.sum() < 2:
        raise TrainingError(
            f"Only {int(keep.sum())} cell(s) cover a region of the model's universe; "
            "a reference needs at least two. Check the genome build."
        )
    cells = ad.AnnData(obs=adata.obs.loc[keep, keys].copy())
    cells.obsm["X_scembed"] = embedding[keep]
    whitening = Whitening.fit(embedding[keep], whiten_components) if whiten_components else None
    space = whitening.transform(embedding[keep]) if whitening else embedding[keep]
    # Seed 0, as when a saved bundle is loaded (its index is rebuilt, see reference.py): the
    # trained reference finds the same neighbours in memory as from its bundle. Built before
    # the map: above EXACT_MAX_CELLS the map's neighbours are searched in it (one index).
    index_progress = stages.stage("index", f"{int(keep.sum()):,} cells")

    def index_step(fraction: float, message: str) -> None:
        index_progress(fraction, message)
        check_stop("Building the kNN index")

    index = build_cell_index(
        space,
        ef_construction=index_ef_construction(len(space)),
        progress=lambda f, m: index_step(0.8 * f, m),
    )
    k = int(min(LEGACY_MAPPING_DISTANCE_K, keep.sum() - 1))
    # one search of every cell in it (every core): the mapping distances' k + 1 nearest and,
    # above EXACT_MAX_CELLS, the map's neighbours (their first columns)
    table = knn_query_all_threads(
        index, space, k + 1, progress=lambda f, m: index_step(0.8 + 0.2 * f, m)
    )
    if fit_umap and keep.sum() > 16:
        from ._background import Background
        from .refmap import fit_reference_map

        # map and labels need nothing of each other: the map is fitted in a thread, one core each
        map_job = Background(fit_reference_map, space, neighbors=table, name="scembed-map")
    try:
        if keys:  # each type's open fraction per region (the clusters' second opinion): here,
            # beside the map, not before the index the map waits for
            from .labels.second_opinion import UNS_KEY, compute_type_profiles
            from .regions import cells_by_universe

            signal = cells_by_universe(coverage.signal[keep], coverage.mapping)
            labels = cells.obs[keys[0]].to_numpy()
            cells.uns[UNS_KEY] = compute_type_profiles(signal, labels, keys[0])
        manifest = {
            "name": name,
            "genome": genome,
            "source": source,
            "label_keys": keys,
            "n_cells_dropped_no_regions": int((~keep).sum()),
            "whiten_components": int(whitening.matrix.shape[1]) if whitening else 0,
            "fraction_peaks_mapped": float(coverage.fraction_peaks_mapped),
            "pooling": model.pooling,
            "label_counts": {k: cells.obs[k].astype(str).value_counts().to_dict() for k in keys},
        }
        if model.metadata.get("format"):
            manifest["region_model"] = {k: str(v) for k, v in model.metadata.items()}
        classifier = None
        if label_model is not False and keys and cells.obs[keys[0]].astype(str).nunique() >= 2:
            from .labels.classifier import LabelModelParams, fit_label_model, manifest_entry

            params = label_model if isinstance(label_model, LabelModelParams) else None
            classifier = fit_label_model(
                embedding[keep],
                cells.obs[keys[0]].to_numpy(),
                whitening=whitening,
                label_key=keys[0],
                params=params,
                seed=seed,
                index=index,  # held-out neighbours searched in it, held-out cells hidden
                progress=stages.stage("classifier"),
            )
            manifest["label_model"] = manifest_entry(classifier)
        reference = Reference(  # the map comes last
            model=model,
            cells=cells,
            manifest=manifest,
            index=index,
            whitening=whitening,
            label_model=classifier,
        )
        stages.stage("distances", f"k = {k}")
        self_distance = self_mapping_distances(reference, k, neighbors=table)
        trust = None
        if keys and cells.obs[keys[0]].astype(str).nunique() >= 3:
            from threadpoolctl import threadpool_limits

            from .labels.loto import calibrate_trust

            stages.stage("unknown", "leave-one-type-out, coverage curve")
            with threadpool_limits(limits=1):  # faster here (calibrate_trust's notes)
                trust = calibrate_trust(reference, coverage.cell_regions[keep], seed=seed)
        map_params = None
        if map_job is not None:
            coords, map_params = map_job.result(
                stages.stage("map", "running since the index was built")
            )
            cells.obsm["X_umap"] = coords
        stages.done("Reference ready")
        return dataclasses.replace(
            reference,
            map_params=map_params,
            manifest={
                **manifest,
                "mapping_distance_k": k,
                "mapping_distance_q50": float(np.quantile(self_distance, 0.5)),
                "mapping_distance_q99": float(np.quantile(self_distance, 0.99)),
                **({"trust": trust} if trust else {}),
            },
        )
    finally:
        if map_job is not None:
            map_job.abandon()  # at once when it is done; stops it when a label stage failed
