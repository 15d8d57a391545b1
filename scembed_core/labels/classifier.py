"""A reference label classifier stored as plain arrays, with its calibration.

A full reference carries a multinomial logistic regression fitted on its own cells'
embeddings (the CellTypist recipe: standardise the features, L2-regularised softmax
regression). It is saved as ``.npy`` arrays plus a JSON file, never as a pickle, and
:meth:`LabelModel.predict_proba` is plain numpy, so loading a bundle needs neither
scikit-learn nor trust. The class probabilities may be blended with the kNN vote
fractions of the cell's nearest reference cells (``knn_weight``).

When the model is fitted, a stratified, seeded share of the reference cells is held out
and a model is fitted on the rest. On the held-out cells a temperature is fitted (one
parameter dividing the logits, Guo et al. 2017: strong regularisation leaves the raw
softmax under- or over-confident), and the same cells give the calibration: a reliability
curve (mean predicted probability vs observed accuracy per bin), the expected calibration
error and the accuracy-versus-coverage curve (slightly optimistic, as the one temperature
parameter was fitted on them). The stored model is then refitted on all cells, starting
from the first fit's optimum (:mod:`.softmax_fit`), and keeps that temperature. Both fits
run on one thread.

Bundle files::

    label_model.json            label key, classes, feature space, hyper-parameters,
                                calibration and cross-validation summaries
    label_model_mean.npy        (n_features,) feature means (standardisation)
    label_model_scale.npy       (n_features,) feature standard deviations
    label_model_coef.npy        (n_classes, n_features) softmax coefficients
    label_model_intercept.npy   (n_classes,) softmax intercepts
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._types import ProgressCallback
from ..errors import ParameterError, ReferenceBundleError
from .calibration import calibration_summary
from .softmax_fit import fit_softmax, held_out_neighbors, holdout_split, prefit
from .vote import vote_fractions

__all__ = [
    "LabelModelParams",
    "LabelModel",
    "DEFAULT_PARAMS",
    "LABEL_MODEL_FILES",
    "SPACES",
    "features_of",
    "fit_label_model",
    "calibration_summary",
    "save_label_model",
    "load_label_model",
    "manifest_entry",
    "softmax",
    "fit_temperature",
]

SPACES = ("plain", "whitened", "both")
LABEL_MODEL_SCHEMA = 1
LABEL_MODEL_FILES = {
    "json": "label_model.json",
    "mean": "label_model_mean.npy",
    "scale": "label_model_scale.npy",
    "coef": "label_model_coef.npy",
    "intercept": "label_model_intercept.npy",
}


@dataclass(frozen=True)
class LabelModelParams:
    """Hyper-parameters of the label classifier.

    The defaults were chosen by cross-validation on the built-in reference's cells, on
    intact and on region-dropout-perturbed held-out folds (``python -m benchmarks.labels``,
    table in BENCHMARKS.md; weighting re-checked by ``benchmarks.label_weighting``).

    Parameters
    ----------
    space
        Features: ``"plain"`` (the mean-pooled embedding ``X_scembed``), ``"whitened"``
        (the reference's analysis space) or ``"both"`` (concatenated).
    C
        Inverse L2 regularisation strength of the logistic regression.
    class_weight, weight_power
        None, or ``"balanced"``: class ``c`` weighs ``(n / (k n_c)) ** weight_power``.
    prior_correction
        ``prior_correction * log(n_c / n)`` is subtracted from the intercepts (:mod:`.priors`).
    knn_weight
        Weight of the kNN vote fractions in the blended probability (0: classifier only).
    max_iter
        lbfgs iterations.
    """

    space: str = "both"
    C: float = 0.03
    class_weight: str | None = None
    knn_weight: float = 0.25
    max_iter: int = 1000
    weight_power: float = 1.0
    prior_correction: float = 0.0

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ParameterError(f"space must be one of {SPACES}, got {self.space!r}.")
        if not self.C > 0:
            raise ParameterError(f"C must be > 0, got {self.C}.")
        if self.class_weight not in (None, "balanced"):
            raise ParameterError(
                f"class_weight must be None or 'balanced', got {self.class_weight!r}."
            )
        if not 0.0 <= self.knn_weight <= 1.0:
            raise ParameterError(f"knn_weight must be in [0, 1], got {self.knn_weight}.")
        if self.max_iter < 1:
            raise ParameterError(f"max_iter must be >= 1, got {self.max_iter}.")
        if not (0.0 <= self.weight_power <= 1.0 and 0.0 <= self.prior_correction <= 1.0):
            raise ParameterError("weight_power and prior_correction must be in [0, 1].")

    def to_dict(self) -> dict:
        """Parameters for the JSON file (rare-type knobs only when set: old entries stay equal)."""
        unset = {("weight_power", 1.0), ("prior_correction", 0.0)}
        return {k: v for k, v in asdict(self).items() if (k, v) not in unset}


DEFAULT_PARAMS = LabelModelParams()


@dataclass(frozen=True)
class LabelModel:
    """A fitted softmax classifier over reference cell embeddings (plain arrays).

    Attributes
    ----------
    label_key
        The reference obs column the classes come from.
    classes
        Class names, in the column order of the probabilities.
    params
        The hyper-parameters it was fitted with.
    mean, scale
        Feature standardisation: ``(x - mean) / scale``.
    coef, intercept
        ``(n_classes, n_features)`` and ``(n_classes,)``: logits ``z = x_std @ coef.T + b``.
    temperature
        Probabilities are ``softmax(z / temperature)``; fitted on the held-out reference
        cells (temperature scaling), 1.0 when the model was fitted without calibration.
    calibration
        Held-out reliability curve, ECE and accuracy-vs-coverage (see
        :func:`calibration_summary`), or empty.
    info
        Free-form facts (cells fitted, cross-validation table).
    """

    label_key: str
    classes: tuple[str, ...]
    params: LabelModelParams
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    calibration: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        n_classes, n_features = np.shape(self.coef)
        if len(self.classes) != n_classes or np.shape(self.intercept) != (n_classes,):
            raise ReferenceBundleError(
                f"The label model has {len(self.classes)} classes but coefficients for "
                f"{n_classes} and {np.shape(self.intercept)} intercepts."
            )
        if np.shape(self.mean) != (n_features,) or np.shape(self.scale) != (n_features,):
            raise ReferenceBundleError(
                f"The label model's scaling ({np.shape(self.mean)}, {np.shape(self.scale)}) "
                f"does not fit its {n_features} features."
            )
        arrays = (self.mean, self.scale, self.coef, self.intercept)
        if not all(np.isfinite(a).all() for a in arrays) or (np.asarray(self.scale) <= 0).any():
            raise ReferenceBundleError("The label model holds non-finite or zero-scale values.")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ReferenceBundleError(
                f"The label model's temperature must be > 0, got {self.temperature}."
            )

    @property
    def n_features(self) -> int:
        """Number of input features."""
        return int(np.shape(self.coef)[1])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Class logits of standardised features (NaN rows stay NaN)."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return x @ np.asarray(self.coef, dtype=np.float64).T + self.intercept

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Classifier probabilities ``(n_cells, n_classes)``; NaN rows for NaN features."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ParameterError(
                f"The label model expects {self.n_features} features per cell, got "
                f"{features.shape}."
            )
        return softmax(self.logits(features) / self.temperature)


def features_of(embedding: np.ndarray, whitening: Any, space: str) -> np.ndarray:
    """Classifier features of E-projection embeddings in ``space`` (see :data:`SPACES`)."""
    embedding = np.asarray(embedding, dtype=np.float32)
    if space == "plain":
        return embedding
    if whitening is None:
        raise ParameterError(
            f"The label model uses the {space!r} space but the reference has no whitening."
        )
    white = whitening.transform(embedding)
    return white if space == "whitened" else np.hstack([embedding, white])


def blend(classifier: np.ndarray, knn: np.ndarray | None, knn_weight: float) -> np.ndarray:
    """``(1 - w) * classifier + w * knn`` (the classifier alone where kNN has no vote)."""
    if knn is None or knn_weight == 0.0:
        return classifier
    mixed = (1.0 - knn_weight) * classifier + knn_weight * knn
    return np.where(np.isnan(knn), classifier, mixed)


def fit_label_model(
    embedding: np.ndarray,
    labels: np.ndarray,
    *,
    whitening: Any = None,
    label_key: str = "",
    params: LabelModelParams | None = None,
    calibrate: bool = True,
    holdout_fraction: float = 0.2,
    k: int = 15,
    seed: int = 0,
    index: Any = None,
    progress: ProgressCallback | None = None,
) -> LabelModel:
    """Fit the label classifier on reference cells, with a held-out calibration first.

    Parameters
    ----------
    embedding
        ``(n_cells, dim)`` reference E-projection embeddings (finite rows).
    labels
        One label per cell.
    whitening
        The reference's :class:`~scembed_core.model.Whitening` (for the whitened
        spaces and the kNN part of a blend, which searches the analysis space). Without
        one the model uses the plain space, whatever ``params.space`` says.
    label_key
        Recorded with the model.
    params
        Hyper-parameters (:data:`DEFAULT_PARAMS` when omitted).
    calibrate
        Hold out ``holdout_fraction`` of the cells (stratified, seeded), fit on the rest
        and store the held-out calibration; the stored model is then fitted on all cells.
    k
        Neighbours of the kNN part of a blend (calibration only; at prediction time the
        caller's neighbours are used).
    seed
        Seed of the hold-out split and of the solver.
    index
        The reference's kNN index over these cells in the analysis space, in this order
        (:func:`~scembed_core.knn.build_cell_index`): the held-out cells' neighbours are
        searched in it with the held-out cells hidden (no second index; it is left as it
        was, but must not be queried by others meanwhile: pass it only while it is private,
        as ``build_reference`` does, never a loaded or shared reference's index). None: an index over the fit cells is built.
    progress
        ``progress(fraction, message)`` before each fit and the calibration.

    Raises
    ------
    ParameterError
        Fewer than two classes, non-finite embeddings, or mismatched lengths.
    """
    params = params or DEFAULT_PARAMS
    if whitening is None and params.space != "plain":  # no analysis space: plain features
        params = dataclasses.replace(params, space="plain")
    embedding = np.asarray(embedding, dtype=np.float32)
    labels = np.asarray(labels).astype(str)
    if len(embedding) != len(labels):
        raise ParameterError(f"{len(embedding)} embeddings but {len(labels)} labels.")
    if not np.isfinite(embedding).all():
        raise ParameterError("Reference embeddings contain NaN or inf; drop those cells.")
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ParameterError(
            f"A label classifier needs at least two classes; {label_key or 'the labels'} "
            f"hold {len(classes)}."
        )
    from ..stopping import check_stop

    report = progress or (lambda fraction, message: None)
    check_stop("The label classifier")
    features = features_of(embedding, whitening, params.space)
    calibration: dict = {}
    temperature = 1.0
    held_out_fit = None
    if calibrate:
        fit_idx, held_idx = holdout_split(codes, holdout_fraction, seed)
        if len(held_idx):
            report(
                0.0,
                f"fitting on {len(fit_idx):,} cells to calibrate on the other {len(held_idx):,}",
            )
            fit_features, fit_codes = features[fit_idx], codes[fit_idx]
            start = prefit(fit_features, fit_codes, len(classes), params, seed)
            held_out_fit = fit_softmax(
                fit_features, fit_codes, len(classes), params, seed, warm=start
            )
            part = LabelModel(label_key, tuple(classes), params, *held_out_fit.arrays)
            logits = part.logits(features[held_idx])
            knn = None
            if params.knn_weight > 0:
                space = embedding if whitening is None else whitening.transform(embedding)
                found = held_out_neighbors(space, index, fit_idx, held_idx, k, seed)
                knn = vote_fractions(found, codes, len(classes))
            check_stop("The label classifier's calibration")
            report(0.45, f"calibrating on {len(held_idx):,} held-out cells")
            temperature = fit_temperature(logits, knn, codes[held_idx], params.knn_weight)
            proba = blend(softmax(logits / temperature), knn, params.knn_weight)
            calibration = calibration_summary(proba, codes[held_idx])
            calibration.update(
                {
                    "holdout_fraction": holdout_fraction,
                    "seed": seed,
                    "n_fit": len(fit_idx),
                    "temperature": temperature,
                }
            )
    check_stop("The label classifier")
    report(0.55, f"final fit on all {len(labels):,} cells")
    start = held_out_fit or prefit(features, codes, len(classes), params, seed)
    final = fit_softmax(features, codes, len(classes), params, seed, warm=start)
    report(1.0, "fitted")
    info = {"n_cells": int(len(labels)), "class_counts": np.bincount(codes).tolist()}
    if held_out_fit is not None:  # lbfgs iterations: held-out fit, final fit (warm-started)
        info["solver_iterations"] = [held_out_fit.n_iter, final.n_iter]
    return LabelModel(
        label_key, tuple(classes), params, *final.arrays, calibration, info, temperature
    )


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax (NaN rows stay NaN)."""
    z = np.array(z, dtype=np.float64)
    z -= np.max(z, axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def fit_temperature(
    logits: np.ndarray, knn: np.ndarray | None, truth: np.ndarray, knn_weight: float
) -> float:
    """Fit the temperature (Guo et al. 2017) on held-out cells.

    The ``T`` minimising the held-out negative log-likelihood of
    ``blend(softmax(logits / T), knn)``; one parameter, so it moves the probabilities
    toward the observed accuracy without changing the ranking of classes.

    Parameters
    ----------
    logits
        ``(n_cells, n_classes)`` held-out logits.
    knn
        Their kNN vote fractions (or None).
    truth
        Their true class codes.
    knn_weight
        The blend's weight of the vote.

    Returns
    -------
    float
        The temperature (1.0 if the search fails).
    """
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(truth))

    def nll(log_t: float) -> float:
        proba = blend(softmax(logits / np.exp(log_t)), knn, knn_weight)
        return float(-np.mean(np.log(np.clip(proba[rows, truth], 1e-12, None))))

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x)) if found.success else 1.0


def save_label_model(model: LabelModel, folder: str | Path) -> list[str]:
    """Write the model's arrays and JSON into ``folder``; returns the file names written."""
    folder = Path(folder)
    arrays = {
        "mean": model.mean,
        "scale": model.scale,
        "coef": model.coef,
        "intercept": model.intercept,
    }
    for key, values in arrays.items():
        np.save(folder / LABEL_MODEL_FILES[key], np.asarray(values, np.float64), allow_pickle=False)
    meta = {
        "schema_version": LABEL_MODEL_SCHEMA,
        "kind": "multinomial logistic regression (softmax over standardised features)",
        "label_key": model.label_key,
        "classes": list(model.classes),
        "params": model.params.to_dict(),
        "n_features": model.n_features,
        "temperature": model.temperature,
        "calibration": model.calibration,
        "info": model.info,
    }
    (folder / LABEL_MODEL_FILES["json"]).write_text(json.dumps(meta, indent=1, default=float))
    return list(LABEL_MODEL_FILES.values())


def load_label_model(folder: str | Path, files: dict) -> LabelModel | None:
    """Read the label model of a bundle whose manifest lists its files (else None).

    ``files`` is the manifest's ``{name: sha256}`` map; the checksums are verified by the
    bundle loader before this is called. Only ``.npy`` (no pickle) and JSON are read.
    """
    names = list(LABEL_MODEL_FILES.values())
    listed = [name in files for name in names]
    if not any(listed):
        return None
    if not all(listed):
        missing = [name for name, ok in zip(names, listed, strict=True) if not ok]
        raise ReferenceBundleError(f"The bundle's label model is incomplete: {missing} missing.")
    folder = Path(folder)
    try:
        meta = json.loads((folder / LABEL_MODEL_FILES["json"]).read_text())
        arrays = {
            key: np.load(folder / LABEL_MODEL_FILES[key], allow_pickle=False)
            for key in ("mean", "scale", "coef", "intercept")
        }
        params = LabelModelParams(**meta["params"])
        return LabelModel(
            label_key=str(meta["label_key"]),
            classes=tuple(str(c) for c in meta["classes"]),
            params=params,
            calibration=dict(meta.get("calibration") or {}),
            info=dict(meta.get("info") or {}),
            temperature=float(meta.get("temperature", 1.0)),
            **arrays,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReferenceBundleError(f"The bundle's label model is unreadable: {exc}") from exc


def manifest_entry(model: LabelModel) -> dict:
    """Summarise the model for the bundle manifest (details in its JSON file)."""
    calibration = model.calibration or {}
    return {
        "label_key": model.label_key,
        "n_classes": len(model.classes),
        "params": model.params.to_dict(),
        "holdout_accuracy": calibration.get("accuracy"),
        "holdout_macro_f1": calibration.get("macro_f1"),
        "ece": calibration.get("ece"),
        "temperature": model.temperature,
        "files": list(LABEL_MODEL_FILES.values()),
    }
