"""ROAD: RemOve And Debias (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy
for Attribution Methods"), with the names of ``pytorch_grad_cam.metrics.road``, in NumPy only.

The removed pixels are not set to a constant but imputed by the noisy linear imputation of the
paper: each removed pixel is the weighted mean of its 8 neighbours (weights 1/6 for the 4 direct
neighbours, 1/12 for the diagonal ones; neighbours outside the image are left out and their
weight with them), a sparse linear system over all removed pixels at once, plus Gaussian noise.

The reference sets the system up with ``scipy.sparse`` and solves it with ``spsolve``; swiftcam
sets up the same system and solves it directly without scipy: the unknowns are grouped by image
row, which makes the (symmetric positive definite) matrix block tridiagonal, and block
elimination with dense NumPy solves (LAPACK) gives the solution to float64 rounding. The
imputed image (float32) agrees with the reference's to about 1e-7 for the same noise (tests:
1e-5).

Differences from the reference:
- The noise comes from NumPy (``rng``), not from torch's generator, so with ``noise > 0`` the
  values differ from run to run exactly as the reference's do; ``noise=0`` (or the same noise,
  see :class:`NoisyLinearImputer`) reproduces the reference.
- ``NoisyLinearImputer(weighting=...)`` uses the given weights (the reference ignores them).
- The metric classes accept ``imputer=`` (default: a fresh ``NoisyLinearImputer()`` as in the
  reference).
"""

import numpy as np

from .perturbation_confidence import (AveragerAcrossThresholds, PerturbationConfidenceMetric,
                                      RemoveLeastRelevantFirst, RemoveMostRelevantFirst)

__all__ = ["neighbors_weights", "NoisyLinearImputer", "ROADMostRelevantFirst",
           "ROADLeastRelevantFirst", "ROADMostRelevantFirstAverage",
           "ROADLeastRelevantFirstAverage", "ROADCombined", "solve_imputation"]

#: ((row offset, column offset), weight) of the neighbours, as the reference.
neighbors_weights = [((1, 1), 1 / 12),
                     ((0, 1), 1 / 6),
                     ((-1, 1), 1 / 12),
                     ((1, -1), 1 / 12),
                     ((0, -1), 1 / 6),
                     ((-1, -1), 1 / 12),
                     ((1, 0), 1 / 6),
                     ((-1, 0), 1 / 6)]

_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


class NoisyLinearImputer:
    """Noisy linear imputation.

    Parameters
    ----------
    noise : float
        Standard deviation of the Gaussian noise added to the imputed pixels (absolute); 0 for
        none.
    weighting : list of ((int, int), float)
        Neighbour offsets and weights (the reference's ``neighbors_weights`` by default). The
        offsets must be in {-1, 0, 1} and come in symmetric pairs with equal weights.
    rng : None, int, numpy.random.Generator or object with ``standard_normal(size)``
        Source of the noise: ``standard_normal((C, n_imputed))`` is drawn per call (in the
        reference's layout, channels first). An object other than a Generator can inject
        exactly the reference's noise in tests.
    """

    def __init__(self, noise=0.01, weighting=neighbors_weights, rng=None):
        self.noise = float(noise)
        self.weighting = list(weighting)
        for (dr, dc), _ in self.weighting:
            if dr not in (-1, 0, 1) or dc not in (-1, 0, 1) or (dr, dc) == (0, 0):
                raise ValueError(f"weighting: offsets must be neighbours in {{-1, 0, 1}}^2, "
                                 f"got {(dr, dc)}")
        offsets = {tuple(o): w for o, w in self.weighting}
        for (dr, dc), w in offsets.items():
            if offsets.get((-dr, -dc)) != w:
                raise ValueError("weighting: each offset needs its opposite with the same "
                                 "weight (the system must be symmetric)")
        if rng is None or isinstance(rng, (int, np.integer)):
            rng = np.random.default_rng(rng)
        self.rng = rng

    def __call__(self, img, mask):
        """Impute the pixels where ``mask == 0``.

        Parameters
        ----------
        img : array_like, (C, H, W)
        mask : array_like, (H, W)
            0 = impute, > 0.5 = keep (binary masks; values strictly between 0 and 0.5 are
            treated as kept, where the reference misbehaves).

        Returns
        -------
        numpy.ndarray, float32, (C, H, W)
        """
        img = np.asarray(img, dtype=np.float32)
        mask = np.asarray(mask)
        if img.ndim != 3 or mask.shape != img.shape[1:]:
            raise ValueError(f"expected img (C, H, W) and mask (H, W), got {img.shape} and "
                             f"{mask.shape}")
        missing = mask.reshape(img.shape[1:]) == 0
        result = img.copy()
        count = int(missing.sum())
        if count == 0:
            return result
        solution = np.float32(solve_imputation(img, missing, self.weighting))  # (count, C)
        values = solution.T
        if self.noise != 0:
            draw = np.asarray(self.rng.standard_normal((img.shape[0], count)), dtype=np.float32)
            values = values + np.float32(self.noise) * draw
        flat = result.reshape(img.shape[0], -1)
        flat[:, np.flatnonzero(missing.reshape(-1))] = values
        return result


def solve_imputation(img, missing, weighting=neighbors_weights):
    """The reference's linear system, solved: the imputed values (float64 (n_missing, C)) of
    the pixels where ``missing`` is True, in row-major order.

    For each missing pixel i with in-image neighbours N(i):
    ``sum_{j in N(i)} w_ij x_i - sum_{j in N(i), missing} w_ij x_j
    = sum_{j in N(i), known} w_ij v_j``. With no known pixel at all the system is singular and
    its right-hand side zero; the reference's solver then returns zeros, and so does this.
    """
    img = np.asarray(img, dtype=np.float64)
    missing = np.asarray(missing, dtype=bool)
    channels, height, width = img.shape
    if not missing.any():
        return np.zeros((0, channels))
    if missing.all():
        return np.zeros((int(missing.sum()), channels))
    weights = {tuple(offset): float(weight) for offset, weight in weighting}
    transpose = width > height  # eliminate along the longer axis: blocks of min(H, W)
    if transpose:
        img = img.transpose(0, 2, 1)
        missing = missing.T
        weights = {(dc, dr): w for (dr, dc), w in weights.items()}
    solution = _block_tridiagonal_solve(img, missing, weights)
    if transpose:
        # Back to the caller's row-major order of the missing pixels.
        order = np.full(missing.shape, -1, dtype=np.int64)
        order[missing] = np.arange(int(missing.sum()))
        solution = solution[order.T[missing.T]]
    return solution


def _shifted(array, dr, dc):
    """out[r, c] = array[r + dr, c + dc], 0 outside (for the trailing two axes)."""
    out = np.zeros_like(array)
    rows, cols = array.shape[-2:]
    r0, r1 = max(0, -dr), min(rows, rows - dr)
    c0, c1 = max(0, -dc), min(cols, cols - dc)
    if r0 < r1 and c0 < c1:
        out[..., r0:r1, c0:c1] = array[..., r0 + dr:r1 + dr, c0 + dc:c1 + dc]
    return out


def _block_tridiagonal_solve(img, missing, weights):
    """Solve the system grouped by rows of ``missing`` (H, W); float64 (n_missing, C)."""
    channels, height, width = img.shape
    known = ~missing
    inside = np.ones((height, width))
    diagonal = np.zeros((height, width))
    rhs = np.zeros((channels, height, width))
    known_values = img * known
    for (dr, dc), w in weights.items():
        diagonal += w * _shifted(inside, dr, dc)
        rhs += w * _shifted(known_values, dr, dc)
    columns = [np.flatnonzero(missing[r]) for r in range(height)]
    # Forward elimination: S_r = D_r - B_{r-1}^T S_{r-1}^{-1} B_{r-1}.
    coupling = [None] * height  # S_r^{-1} B_r
    partial = [None] * height  # S_r^{-1} y_r
    for r in range(height):
        cols = columns[r]
        if len(cols) == 0:
            continue
        block = np.diag(diagonal[r, cols])
        w = weights.get((0, 1), 0.0)
        if w:
            adjacent = np.flatnonzero(np.diff(cols) == 1)
            block[adjacent, adjacent + 1] -= w
            block[adjacent + 1, adjacent] -= w
        y = rhs[:, r, cols].T.copy()
        if r > 0 and coupling[r - 1] is not None:
            above = _row_coupling(columns[r - 1], cols, weights)  # B_{r-1}
            block -= above.T @ coupling[r - 1]
            y -= above.T @ partial[r - 1]
        below = None
        if r + 1 < height and len(columns[r + 1]):
            below = _row_coupling(cols, columns[r + 1], weights)
        if below is not None:
            solved = np.linalg.solve(block, np.concatenate([below, y], axis=1))
            coupling[r] = solved[:, :below.shape[1]]
            partial[r] = solved[:, below.shape[1]:]
        else:
            partial[r] = np.linalg.solve(block, y)
    # Back substitution: x_r = S_r^{-1} y_r - S_r^{-1} B_r x_{r+1}.
    values = [None] * height
    for r in range(height - 1, -1, -1):
        if len(columns[r]) == 0:
            continue
        x = partial[r]
        if coupling[r] is not None:
            x = x - coupling[r] @ values[r + 1]
        values[r] = x
    return np.concatenate([v for v in values if v is not None], axis=0)


def _row_coupling(upper, lower, weights):
    """B (len(upper), len(lower)): -w for each missing pair (row r col a, row r+1 col b) that
    are neighbours."""
    block = np.zeros((len(upper), len(lower)))
    if len(upper) == 0 or len(lower) == 0:
        return block
    lower_index = np.full(int(max(upper.max(), lower.max())) + 2, -1, dtype=np.int64)
    lower_index[lower] = np.arange(len(lower))
    for dc in (-1, 0, 1):
        w = weights.get((1, dc), 0.0)
        if not w:
            continue
        target = upper + dc
        valid = (target >= 0) & (target < len(lower_index))
        rows = np.flatnonzero(valid)
        cols = lower_index[target[valid]]
        hit = cols >= 0
        block[rows[hit], cols[hit]] -= w
    return block


class ROADMostRelevantFirst(PerturbationConfidenceMetric):
    """Score change when the most relevant ``100 - percentile`` % of the pixels are imputed."""

    def __init__(self, percentile=80, imputer=None):
        super().__init__(RemoveMostRelevantFirst(
            percentile, NoisyLinearImputer() if imputer is None else imputer))


class ROADLeastRelevantFirst(PerturbationConfidenceMetric):
    """Score change when the least relevant ``percentile`` % of the pixels are imputed."""

    def __init__(self, percentile=20, imputer=None):
        super().__init__(RemoveLeastRelevantFirst(
            percentile, NoisyLinearImputer() if imputer is None else imputer))


class ROADMostRelevantFirstAverage(AveragerAcrossThresholds):
    """:class:`ROADMostRelevantFirst` averaged over percentiles."""

    def __init__(self, percentiles=_PERCENTILES, imputer=None):
        super().__init__(lambda p: ROADMostRelevantFirst(p, imputer), percentiles)


class ROADLeastRelevantFirstAverage(AveragerAcrossThresholds):
    """:class:`ROADLeastRelevantFirst` averaged over percentiles."""

    def __init__(self, percentiles=_PERCENTILES, imputer=None):
        super().__init__(lambda p: ROADLeastRelevantFirst(p, imputer), percentiles)


class ROADCombined:
    """(LeRF average - MoRF average) / 2: large when removing unimportant pixels keeps the
    score and removing important ones drops it."""

    def __init__(self, percentiles=_PERCENTILES, imputer=None):
        self.percentiles = list(percentiles)
        self.morf_averager = ROADMostRelevantFirstAverage(percentiles, imputer)
        self.lerf_averager = ROADLeastRelevantFirstAverage(percentiles, imputer)

    def __call__(self, input_tensor, cams, targets, model):
        scores_lerf = self.lerf_averager(input_tensor, cams, targets, model)
        scores_morf = self.morf_averager(input_tensor, cams, targets, model)
        return (scores_lerf - scores_morf) / 2
