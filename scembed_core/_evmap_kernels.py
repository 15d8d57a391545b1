"""Compiled kernels of :mod:`scembed_core.evmap` (numba, cached on disk).

Line-for-line ports of umap-learn 0.5's ``smooth_knn_dist``, ``compute_membership_strengths``
(bipartite), ``tau_rand_int``, ``clip`` and ``_optimize_layout_euclidean_single_epoch``
(``move_other=False``), reorganised to loop over query cells in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

__all__ = ["smooth_knn", "memberships", "optimize"]


@intrinsic
def _flag_set(typingctx, flag):  # noqa: ANN001, ANN202 - numba intrinsic
    """Read ``flag[0]`` (int64 array) with an atomic load the compiler never hoists."""
    sig = types.boolean(flag)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        array = context.make_array(signature.args[0])(context, builder, args[0])
        value = builder.load_atomic(array.data, "monotonic", 8)
        return builder.icmp_signed("!=", value, value.type(0))

    return sig, codegen


@njit(cache=True, parallel=True)
def smooth_knn(
    distances: np.ndarray, k: int, local_connectivity: float, mean_distances: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Port umap's ``smooth_knn_dist`` (sigmas, rhos) for rows of query-to-reference distances.

    ``mean_distances`` holds one value per row (umap: the batch's mean distance everywhere;
    the per-cell mode: each row's own mean, so a row's result never depends on the others).
    """
    n, width = distances.shape
    target = np.log2(k)
    rho = np.zeros(n, dtype=np.float32)
    sigma = np.zeros(n, dtype=np.float32)
    floatmax = np.finfo(np.float64).max
    for i in prange(n):
        lo = 0.0
        hi = floatmax
        mid = 1.0
        row = distances[i]
        n_nonzero = 0
        for j in range(width):
            if row[j] > 0.0:
                n_nonzero += 1
        nonzero = np.empty(n_nonzero, dtype=np.float32)
        m = 0
        for j in range(width):
            if row[j] > 0.0:
                nonzero[m] = row[j]
                m += 1
        if n_nonzero >= local_connectivity and n_nonzero > 0:
            index = int(np.floor(local_connectivity))
            interpolation = local_connectivity - index
            if index > 0:
                rho[i] = nonzero[index - 1]
                if interpolation > 1e-5:
                    rho[i] += interpolation * (nonzero[index] - nonzero[index - 1])
            else:
                rho[i] = interpolation * nonzero[0]
        elif n_nonzero > 0:
            rho[i] = np.max(nonzero)
        for _ in range(64):
            psum = 0.0
            for j in range(1, width):
                d = row[j] - rho[i]
                if d > 0:
                    psum += np.exp(-(d / mid))
                else:
                    psum += 1.0
            if np.fabs(psum - target) < 1e-5:
                break
            if psum > target:
                hi = mid
                mid = (lo + hi) / 2.0
            else:
                lo = mid
                if hi >= floatmax:
                    mid *= 2
                else:
                    mid = (lo + hi) / 2.0
        sigma[i] = mid
        if rho[i] > 0.0:
            mean_row = np.mean(row)
            if sigma[i] < 1e-3 * mean_row:
                sigma[i] = 1e-3 * mean_row
        elif sigma[i] < 1e-3 * mean_distances[i]:
            sigma[i] = 1e-3 * mean_distances[i]
    return sigma, rho


@njit(cache=True, parallel=True)
def memberships(
    cols: np.ndarray, dists: np.ndarray, sigma: np.ndarray, rho: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    """Port umap's ``compute_membership_strengths`` (bipartite) as an (n, k) weight matrix."""
    n, width = cols.shape
    out = np.zeros((n, width), dtype=np.float32)
    for i in prange(n):
        for j in range(width):
            if cols[i, j] < 0:
                continue
            if dists[i, j] - rho[i] <= 0.0 or sigma[i] == 0.0:
                out[i, j] = 1.0
            else:
                out[i, j] = np.exp(-((dists[i, j] - rho[i]) / (sigma[i])))
    return out


@njit(cache=True)
def _tau_rand_int(state: np.ndarray) -> int:  # pragma: no cover - numba
    """Draw from umap's Tausworthe generator (returns an int32, as umap's signature casts)."""
    state[0] = (((state[0] & 4294967294) << 12) & 0xFFFFFFFF) ^ (
        (((state[0] << 13) & 0xFFFFFFFF) ^ state[0]) >> 19
    )
    state[1] = (((state[1] & 4294967288) << 4) & 0xFFFFFFFF) ^ (
        (((state[1] << 2) & 0xFFFFFFFF) ^ state[1]) >> 25
    )
    state[2] = (((state[2] & 4294967280) << 17) & 0xFFFFFFFF) ^ (
        (((state[2] << 3) & 0xFFFFFFFF) ^ state[2]) >> 11
    )
    value = (state[0] ^ state[1] ^ state[2]) & 0xFFFFFFFF
    if value >= 2147483648:
        value -= 4294967296
    return value


@njit(cache=True)
def _clip(value: float) -> float:  # pragma: no cover - numba
    if value > 4.0:
        return 4.0
    if value < -4.0:
        return -4.0
    return value


@njit(cache=True, parallel=True, fastmath=True, nogil=True)
def optimize(
    position: np.ndarray,
    reference: np.ndarray,
    cols: np.ndarray,
    epochs_per_sample: np.ndarray,
    rng_states: np.ndarray,
    n_epochs: int,
    a: float,
    b: float,
    gamma: float,
    initial_alpha: float,
    negative_sample_rate: int,
    snap_epochs: np.ndarray,
    snap_slot: np.ndarray,
    snaps: np.ndarray,
    stop: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Run umap's SGD against fixed reference points, one query cell at a time (in parallel).

    ``cols`` (n, k) are the reference neighbours (-1: no edge), ``epochs_per_sample`` the
    matching umap schedule. Positions of cells with ``snap_slot >= 0`` are copied into
    ``snaps`` after each epoch listed in ``snap_epochs``. The kernel releases the GIL and
    leaves every cell's loop at the next epoch once ``stop[0]`` is set (by
    :func:`scembed_core.stopping.watch`).
    """
    n, width = cols.shape
    n_ref = reference.shape[0]
    inverse_n = 1.0 / n_ref
    dim = position.shape[1]
    n_snaps = snap_epochs.shape[0]
    # single precision, one power per update (d^(2b) = d^(2(b-1)) d^2): umap does the same
    # arithmetic in double precision with two powers; the gradients agree to ~1e-7
    a32 = np.float32(a)
    b32 = np.float32(b)
    b_minus_1 = np.float32(b - 1.0)
    attract = np.float32(-2.0 * a * b)
    repel = np.float32(2.0 * gamma * b)
    one = np.float32(1.0)
    eps = np.float32(0.001)
    for j in prange(n):
        current = position[j]
        state = rng_states[j].copy()
        next_sample = epochs_per_sample[j].copy()
        per_negative = epochs_per_sample[j] / negative_sample_rate
        next_negative = per_negative.copy()
        alpha = initial_alpha
        snap = 0
        for epoch in range(n_epochs):
            if _flag_set(stop):
                break
            for e in range(width):
                k = cols[j, e]
                if k < 0 or next_sample[e] > epoch:
                    continue
                other = reference[k]
                dist_squared = np.float32(0.0)
                for d in range(dim):
                    diff = current[d] - other[d]
                    dist_squared += diff * diff
                if dist_squared > 0.0:
                    power = dist_squared**b_minus_1
                    grad_coeff = attract * power / (a32 * power * dist_squared + one)
                else:
                    grad_coeff = np.float32(0.0)
                for d in range(dim):
                    grad_d = _clip(grad_coeff * (current[d] - other[d]))
                    current[d] += grad_d * alpha
                next_sample[e] += epochs_per_sample[j, e]
                n_neg = int((epoch - next_negative[e]) / per_negative[e])
                for _ in range(n_neg):
                    # umap's ``draw % n`` (Python semantics), without an integer division
                    draw = _tau_rand_int(state)
                    k = draw - np.int64(np.floor(draw * inverse_n)) * n_ref
                    if k < 0:
                        k += n_ref
                    elif k >= n_ref:
                        k -= n_ref
                    other = reference[k]
                    dist_squared = np.float32(0.0)
                    for d in range(dim):
                        diff = current[d] - other[d]
                        dist_squared += diff * diff
                    if dist_squared > 0.0:
                        grad_coeff = repel / (
                            (eps + dist_squared) * (a32 * dist_squared**b32 + one)
                        )
                        for d in range(dim):
                            if grad_coeff > 0.0:
                                current[d] += _clip(grad_coeff * (current[d] - other[d])) * alpha
                next_negative[e] += n_neg * per_negative[e]
            alpha = initial_alpha * (1.0 - (float(epoch) / float(n_epochs)))
            if snap_slot[j] >= 0:
                while snap < n_snaps and snap_epochs[snap] == epoch:
                    for d in range(dim):
                        snaps[snap, snap_slot[j], d] = current[d]
                    snap += 1


#: umap's generator and clamp, shared with the map fit's kernel (:mod:`._mapfit_kernels`).
tau_rand_int, clip = _tau_rand_int, _clip
