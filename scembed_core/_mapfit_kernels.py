"""Compiled kernel of :mod:`scembed_core.refmap`: umap's layout epoch (numba, cached on disk).

A line-for-line port of umap-learn 0.5's ``_optimize_layout_euclidean_single_epoch`` with
``move_other=True`` (both ends of an edge move, as in a fit), no densMAP, run serially as
umap-learn runs it whenever a ``random_state`` is given (so a seed gives one map). Its
random numbers come from the same Tausworthe generator (``tau_rand_int``, shared with
:mod:`scembed_core._evmap_kernels`), and the arithmetic is umap's: double-precision
gradients on single-precision coordinates.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.core import types

from ._evmap_kernels import clip, tau_rand_int

__all__ = ["layout_epoch"]


@njit(
    "f4(f4[::1],f4[::1])",
    fastmath=True,
    cache=True,
    locals={"result": types.float32, "diff": types.float32, "dim": types.intp, "i": types.intp},
)
def _rdist(x: np.ndarray, y: np.ndarray) -> float:  # pragma: no cover - numba
    """Squared Euclidean distance in single precision (umap's ``rdist``)."""
    result = 0.0
    dim = x.shape[0]
    for i in range(dim):
        diff = x[i] - y[i]
        result += diff * diff
    return result


@njit(cache=True, fastmath=True, nogil=True)  # nogil: a build's label stages run meanwhile
def layout_epoch(
    embedding: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    n_vertices: int,
    epochs_per_sample: np.ndarray,
    a: float,
    b: float,
    rng_state_per_sample: np.ndarray,
    gamma: float,
    alpha: float,
    epochs_per_negative_sample: np.ndarray,
    epoch_of_next_negative_sample: np.ndarray,
    epoch_of_next_sample: np.ndarray,
    n: int,
) -> None:  # pragma: no cover - numba
    """Run epoch ``n`` of umap's SGD over the graph's edges, in place.

    ``embedding`` (n_vertices, dim) float32 is both umap's head and tail embedding;
    ``head``/``tail`` are the edges' ends, ``rng_state_per_sample`` one generator state per
    vertex (int64, (n_vertices, 3)). The schedules ``epoch_of_next_*`` advance in place.
    """
    dim = embedding.shape[1]
    for i in range(epochs_per_sample.shape[0]):
        if epoch_of_next_sample[i] <= n:
            j = head[i]
            k = tail[i]
            current = embedding[j]
            other = embedding[k]
            dist_squared = _rdist(current, other)
            if dist_squared > 0.0:
                grad_coeff = -2.0 * a * b * pow(dist_squared, b - 1.0)
                grad_coeff /= a * pow(dist_squared, b) + 1.0
            else:
                grad_coeff = 0.0
            for d in range(dim):
                grad_d = clip(grad_coeff * (current[d] - other[d]))
                current[d] += grad_d * alpha
                other[d] += -grad_d * alpha
            epoch_of_next_sample[i] += epochs_per_sample[i]
            n_neg_samples = int(
                (n - epoch_of_next_negative_sample[i]) / epochs_per_negative_sample[i]
            )
            for _ in range(n_neg_samples):
                k = tau_rand_int(rng_state_per_sample[j]) % n_vertices
                other = embedding[k]
                dist_squared = _rdist(current, other)
                if dist_squared > 0.0:
                    grad_coeff = 2.0 * gamma * b
                    grad_coeff /= (0.001 + dist_squared) * (a * pow(dist_squared, b) + 1)
                elif j == k:
                    continue
                else:
                    grad_coeff = 0.0
                if grad_coeff > 0.0:  # umap adds a zero step otherwise
                    for d in range(dim):
                        current[d] += clip(grad_coeff * (current[d] - other[d])) * alpha
            epoch_of_next_negative_sample[i] += n_neg_samples * epochs_per_negative_sample[i]
