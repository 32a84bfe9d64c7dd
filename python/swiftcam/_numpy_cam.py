"""NumPy pieces of the CAM pipeline for the methods computed outside the engine (ScoreCAM,
AblationCAM): the weighted channel sum, the first-principal-component projection
(``eigen_smooth``), the post-processing of pytorch-grad-cam (ReLU, per-map min-max, resize;
across layers ReLU, mean, second min-max) and torch's ``UpsamplingBilinear2d``
(``align_corners=True``).

The post-processing is the same arithmetic as the engine's (``CAMPostProcessing.swift``) and
the reference's (``base_cam.compute_cam_per_layer`` / ``aggregate_multi_layers``): both follow
pytorch-grad-cam's float32 NumPy code; the tests hold the two to 1e-6.
"""

import numpy as np

from .utils.image import scale_cam_image

__all__ = ["weighted_sum", "projection", "postprocess", "upsample_align_corners"]


def weighted_sum(weights, activations):
    """``sum_c weights[k, c] * activations[c]`` for K weight vectors.

    Parameters
    ----------
    weights : (K, C) array
    activations : (C, h, w) float32

    Returns
    -------
    numpy.ndarray, float32, (K, h, w)
        Accumulated in float64 (the reference sums float32 products in float32; the two agree
        to a few float32 roundings of the largest term).
    """
    channels, height, width = activations.shape
    flat = activations.reshape(channels, height * width).astype(np.float64)
    maps = np.asarray(weights, dtype=np.float64) @ flat
    return maps.reshape(-1, height, width).astype(np.float32)


def projection(tensor):
    """Projection of a (C, h, w) tensor on its first principal component, as
    pytorch-grad-cam's ``get_2d_projection`` (positions are samples, channels features; NaN
    counts as 0), computed in float64, with the engine's sign rule: the map correlates
    positively with the channel sum of the (uncentred) tensor. Returns float32 (h, w)."""
    channels, height, width = tensor.shape
    x = np.asarray(tensor, dtype=np.float64).reshape(channels, -1).T.copy()
    x[np.isnan(x)] = 0
    mean_map = x.sum(axis=1)
    centred = x - x.mean(axis=0)
    if centred.size == 0:
        return np.zeros((height, width), dtype=np.float32)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    result = centred @ vt[0]
    if float(result @ mean_map) < 0:
        result = -result
    return result.reshape(height, width).astype(np.float32)


def postprocess(layer_maps, output_size):
    """pytorch-grad-cam's post-processing of raw maps.

    Parameters
    ----------
    layer_maps : list of float32 arrays (N, K, h_i, w_i)
        One raw map per target layer (before any ReLU).
    output_size : (int, int)
        (H, W) of the heatmaps.

    Returns
    -------
    numpy.ndarray, float32, (N, K, H, W)
        Per layer ReLU, ``scale_cam_image`` with resize; over layers ReLU, mean and
        ``scale_cam_image`` again (also with one layer, as the reference).
    """
    height, width = output_size
    n, k = layer_maps[0].shape[:2]
    scaled = []
    for maps in layer_maps:
        cam = np.maximum(maps.reshape((n * k,) + maps.shape[2:]), 0)
        scaled.append(scale_cam_image(cam, (width, height))[:, None])
    stacked = np.maximum(np.concatenate(scaled, axis=1), 0)
    result = scale_cam_image(np.mean(stacked, axis=1))
    return result.reshape(n, k, height, width)


def upsample_align_corners(maps, output_size):
    """Bilinear resize with ``align_corners=True``, as torch's ``UpsamplingBilinear2d``.

    Parameters
    ----------
    maps : (B, h, w) float32
    output_size : (int, int)
        (H, W).

    Returns
    -------
    numpy.ndarray, float32, (B, H, W)
        Source coordinates ``dst * (in - 1) / (out - 1)`` and weights in float32 as torch's
        CPU kernel; agrees with it to about one float32 rounding.
    """
    height, width = output_size
    y0, y1, wy = _corner_taps(maps.shape[1], height)
    x0, x1, wx = _corner_taps(maps.shape[2], width)
    one = np.float32(1)
    rows = maps[:, y0] * (one - wy)[None, :, None] + maps[:, y1] * wy[None, :, None]
    return rows[:, :, x0] * (one - wx) + rows[:, :, x1] * wx


def _corner_taps(src_len, dst_len):
    if dst_len > 1:
        scale = np.float32(src_len - 1) / np.float32(dst_len - 1)
    else:
        scale = np.float32(0)
    coords = scale * np.arange(dst_len, dtype=np.float32)
    low = np.minimum(np.floor(coords).astype(np.intp), src_len - 1)
    weight = (coords - low.astype(np.float32)).astype(np.float32)
    high = np.minimum(low + 1, src_len - 1)
    return low, high, weight
