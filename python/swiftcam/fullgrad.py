"""FullGrad (Srinivas & Fleuret 2019), with pytorch-grad-cam's name and numbers.

    cam = swiftcam.FullGrad(model)
    heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])   # (N, H, W) in [0, 1]

One forward pass and one backward pass down to the input, in the engine
(``swiftcam_trace_fullgrad``). As pytorch-grad-cam 1.5.7's ``FullGrad``, per image and target the
map is the min-max normalisation of the sum of these terms:

- for each input channel, ``|d(score)/d(input) * input|``, min-max normalised;
- for each layer with a bias, in module order (for a torchvision ResNet every BatchNorm2d, whose
  bias is ``beta - running_mean * gamma / sqrt(running_var + eps)``):
  ``|bias_c * d(score)/d(output_c)|``, each channel min-max normalised, resized bilinearly to the
  input size and summed over channels.

``eigen_smooth=True`` follows the reference: the terms are min-max normalised and resized to
(H // 8, W // 8), projected on their first principal component (swiftcam's sign rule: the map
correlates positively with the sum of the terms, see ``_numpy_cam.projection``; the reference's
sign is arbitrary), and the projection is normalised and resized back to (H, W). That part runs
in NumPy on the engine's per-term maps.

``target_layers`` is ignored, as in the reference (a warning says so when some are given).
"""

import warnings

import numpy as np

from . import _native
from ._numpy_cam import projection
from .cam import BaseCAM, _check_finite
from .errors import InvalidInputError
from .utils.image import scale_cam_image

__all__ = ["FullGrad"]


class FullGrad(BaseCAM):
    """FullGrad: input-gradient x input plus bias x gradient at every biased layer.

    Parameters
    ----------
    model : swiftcam.Model
    target_layers : ignored
        Accepted for signature compatibility; when not empty a ``UserWarning`` says that every
        layer with a bias is used instead (the reference prints the same warning).
    reshape_transform : None

    ``explain`` returns a :class:`~swiftcam.CAMResult` whose ``raw_maps`` is
    ``{"fullgrad": (N, H, W)}``: the sum of the terms before the final min-max normalisation
    (with ``eigen_smooth``, the resized projection before it); ``target_layers`` is ``()``.
    """

    def __init__(self, model, target_layers=None, reshape_transform=None):
        if _given(target_layers):
            warnings.warn("target_layers is ignored in FullGrad: every layer with a bias (every "
                          "batch norm of a ResNet) is used instead, as in pytorch-grad-cam",
                          UserWarning, stacklevel=2)
        self._bind_model(model, reshape_transform)
        self._layer_ids = (_native.LAYER_INPUT,)
        self.target_layers = ()

    def __repr__(self):
        return f"FullGrad({self.model!r})"

    def _compute(self, batch, make_seeds, eigen_smooth):
        """Heatmaps (N, K, H, W), raw maps {"fullgrad": (N, K, H, W)}, logits and the Seeds."""
        model = self.model
        n, channels, height, width = batch.shape
        _check_finite(batch)
        if eigen_smooth and (height < 8 or width < 8):
            raise InvalidInputError(f"input_tensor: FullGrad with eigen_smooth resizes the maps to "
                                    f"(H // 8, W // 8) and needs H, W >= 8, got {height}x{width}")
        terms = channels + model._handle.bias_layer_count
        trace = model._trace(batch, self._layer_ids, "input_tensor")
        try:
            logits = np.empty((n, model.num_classes), dtype=np.float32)
            trace.logits(logits)
            seeds = make_seeds(logits)
            shape = (n, seeds.k) + ((terms,) if eigen_smooth else ()) + (height, width)
            maps = np.empty(shape, dtype=np.float32)
            trace.fullgrad(seeds.seeds, seeds.k, not eigen_smooth, height, width, maps)
        finally:
            trace.close()
        if eigen_smooth:
            maps = _eigen_smooth(maps.reshape((n * seeds.k, terms, height, width)))
        sums = maps.reshape(n, seeds.k, height, width)
        heatmaps = scale_cam_image(sums.reshape(-1, height, width)).reshape(sums.shape)
        self.outputs = logits
        return heatmaps, {"fullgrad": sums}, logits, seeds


def _given(target_layers):
    """True for target layers that are not None or an empty sequence."""
    if target_layers is None:
        return False
    try:
        return len(target_layers) > 0
    except TypeError:
        return True


def _eigen_smooth(terms):
    """The reference's eigen_smooth on per-term maps (B, T, H, W): each term min-max normalised
    and resized to (H // 8, W // 8), first-principal-component projection, then normalised and
    resized back. Returns float32 (B, H, W), before the final normalisation."""
    rows, count, height, width = terms.shape
    small = scale_cam_image(terms.reshape(rows * count, height, width), (width // 8, height // 8))
    small = small.reshape(rows, count, height // 8, width // 8)
    projected = np.stack([projection(maps) for maps in small])
    return scale_cam_image(projected, (width, height))
