"""CAM methods with pytorch-grad-cam's names and call signature.

Switching from pytorch-grad-cam is a changed import plus layer names instead of modules::

    cam = swiftcam.GradCAM(model, target_layers=["layer4"])
    heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])   # (N, H, W) in [0, 1]

Each call runs one forward pass (kept in a trace), computes the gradient seeds from the targets
and the logits, and asks the engine for the maps of all target layers from one backward pass.
Deliberate differences from the reference: a ``targets`` list whose length differs from the
batch raises instead of being silently truncated; class indices out of range raise; unknown
layer names raise listing the valid ones.
"""

import numpy as np

from . import _native
from ._seeds import seeds_for_targets, seeds_for_top_k
from .augmentation import smooth_explanation
from .errors import InvalidInputError, ModelClosedError
from .model import Model
from .result import CAMResult

__all__ = ["BaseCAM", "GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus",
           "XGradCAM", "LayerCAM", "EigenCAM", "EigenGradCAM"]


class BaseCAM:
    """Common machinery of the CAM methods; use a subclass such as :class:`GradCAM`.

    Parameters
    ----------
    model : swiftcam.Model
    target_layers : str or sequence of str
        Layer names from ``model.layer_names`` (indices also work). With several layers, the
        per-layer maps are averaged as in pytorch-grad-cam.
    reshape_transform : None
        Accepted for signature compatibility; only None is supported (CNNs only).

    Attributes
    ----------
    outputs : numpy.ndarray or None
        The logits (N, num_classes) of the last call, as in pytorch-grad-cam.
    """

    #: SWIFTCAM_METHOD_* of the engine.
    method_id = None
    #: False for methods that never look at gradients (EigenCAM).
    uses_gradients = True

    def __init__(self, model, target_layers, reshape_transform=None):
        if type(self).method_id is None:
            raise TypeError("BaseCAM is abstract; use GradCAM, HiResCAM, ...")
        self._bind(model, target_layers, reshape_transform)

    def _bind(self, model, target_layers, reshape_transform):
        """Check and keep the model and target layers (shared by every CAM class)."""
        self._bind_model(model, reshape_transform)
        indices = model._layer_indices(target_layers, "target_layers")
        if not indices:
            raise InvalidInputError("target_layers: expected at least one layer name")
        if len(set(indices)) != len(indices):
            raise InvalidInputError(f"target_layers: a layer is listed twice in "
                                    f"{list(target_layers)}")
        self._layer_ids = tuple(indices)
        self.target_layers = tuple(model.layer_names[i] for i in indices)

    def _bind_model(self, model, reshape_transform):
        """Check and keep the model (open, a swiftcam.Model; no reshape_transform)."""
        if not isinstance(model, Model):
            hint = ""
            if callable(getattr(model, "state_dict", None)):
                hint = "; convert a torch model with swiftcam.from_torch(model)"
            raise TypeError(f"model: expected a swiftcam.Model, got {type(model).__name__}{hint}")
        if model.closed:
            raise ModelClosedError("model: the model is closed; load it again to compute CAMs")
        if reshape_transform is not None:
            raise NotImplementedError("reshape_transform is not supported: swiftcam explains "
                                      "CNNs whose layers are already (N, C, h, w)")
        self.model = model
        self.outputs = None

    # -- the pytorch-grad-cam interface -------------------------------------------------------

    def __call__(self, input_tensor, targets=None, aug_smooth=False, eigen_smooth=False):
        """Compute the CAMs of a batch.

        Parameters
        ----------
        input_tensor : array_like, (N, C, H, W)
        targets : list of targets, optional
            One per image (see :mod:`swiftcam.utils.model_targets`); None explains each
            image's highest-scoring class.
        aug_smooth : bool
            Average the maps of the reference's six test-time augmentations (horizontal flip x
            brightness 0.9/1/1.1), each flipped back.
        eigen_smooth : bool
            Replace the channel sum by the first principal component of the weighted
            activations.

        Returns
        -------
        numpy.ndarray, float32, (N, H, W)
            Heatmaps in [0, 1] at the input's size.
        """
        return self.explain(input_tensor, targets, aug_smooth=aug_smooth,
                            eigen_smooth=eigen_smooth).heatmaps

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        # Nothing to release (no hooks); exceptions propagate, unlike the reference's IndexError.
        return None

    def __repr__(self):
        return f"{type(self).__name__}({self.model!r}, target_layers={list(self.target_layers)})"

    # -- swiftcam additions -------------------------------------------------------------------

    def explain(self, input_tensor, targets=None, aug_smooth=False, eigen_smooth=False):
        """Like ``__call__``, returning a :class:`CAMResult` with the raw per-layer maps,
        logits, classes and scores as well.

        With ``aug_smooth``, the heatmaps are the mean of the reference's six test-time
        augmentations (horizontal flip x brightness 0.9/1/1.1, each map flipped back); the raw
        maps, logits, classes and scores are those of the un-augmented input.
        """
        batch = self.model._input(input_tensor, "input_tensor")
        if aug_smooth:
            return smooth_explanation(lambda augmented: self._explain(augmented, targets,
                                                                      eigen_smooth), batch)
        return self._explain(batch, targets, eigen_smooth)

    def _explain(self, batch, targets, eigen_smooth):
        heatmaps, raw, logits, seeds = self._compute(
            batch, lambda logits: seeds_for_targets(targets, logits), eigen_smooth)
        return CAMResult(heatmaps=heatmaps[:, 0], raw_maps={k: v[:, 0] for k, v in raw.items()},
                         logits=logits, classes=seeds.classes[:, 0], scores=seeds.scores[:, 0],
                         method=type(self).__name__, target_layers=self.target_layers)

    def top_k(self, input_tensor, k=5, eigen_smooth=False):
        """CAMs of each image's ``k`` highest-scoring classes, from one forward pass and one
        engine call (the k seeds share the backward pass).

        Returns
        -------
        heatmaps : numpy.ndarray, float32, (N, k, H, W)
            ``heatmaps[n, j]`` equals ``cam(x[n:n+1], [ClassifierOutputTarget(classes[n, j])])``.
        classes : numpy.ndarray, int64, (N, k)
            Class indices, highest logit first.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {type(k).__name__}")
        if not 1 <= k <= self.model.num_classes:
            raise InvalidInputError(f"k must be between 1 and {self.model.num_classes} (the "
                                    f"number of classes), got {k}")
        batch = self.model._input(input_tensor, "input_tensor")
        heatmaps, _, _, seeds = self._compute(
            batch, lambda logits: seeds_for_top_k(logits, int(k)), eigen_smooth)
        return heatmaps, seeds.classes

    # -- engine call --------------------------------------------------------------------------

    def _compute(self, batch, make_seeds, eigen_smooth):
        """One trace, seeds from its logits, one engine call for every target layer.

        Returns heatmaps (N, K, H, W), raw maps {layer: (N, K, h, w)}, logits and the Seeds.
        """
        model = self.model
        n, _, height, width = batch.shape
        _check_finite(batch)
        trace = model._trace(batch, self._layer_ids, "input_tensor")
        try:
            logits = np.empty((n, model.num_classes), dtype=np.float32)
            trace.logits(logits)
            seeds = make_seeds(logits)
            heatmaps = np.empty((n, seeds.k, height, width), dtype=np.float32)
            raw = {}
            for index in self._layer_ids:
                _, _, h, w = model.layer_shape(index, batch.shape)
                raw[model.layer_names[index]] = np.empty((n, seeds.k, h, w), dtype=np.float32)
            trace.cam(self.method_id, bool(eigen_smooth), height, width, seeds.seeds, seeds.k,
                      heatmaps, list(raw.values()))
        finally:
            trace.close()
        self.outputs = logits
        return heatmaps, raw, logits, seeds


def _check_finite(batch):
    """CAMs need finite inputs: one NaN makes its image's whole map NaN (not in [0, 1])."""
    finite = np.isfinite(batch)
    if not finite.all():
        position = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise InvalidInputError(
            f"input_tensor: expected finite values, got {batch[position]} at index {position}; "
            "a CAM of an image with NaN or Inf is undefined (model(x) itself propagates them "
            "per image, as torch does)")


class GradCAM(BaseCAM):
    """Grad-CAM: channel weights are the spatial mean of the gradients."""

    method_id = _native.METHOD_GRADCAM


class HiResCAM(BaseCAM):
    """HiResCAM: the channel sum of gradients times activations."""

    method_id = _native.METHOD_HIRESCAM


class GradCAMElementWise(BaseCAM):
    """Element-wise Grad-CAM: the channel sum of max(gradients x activations, 0)."""

    method_id = _native.METHOD_GRADCAM_ELEMENTWISE


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++: second-order weighting of the positive gradients."""

    method_id = _native.METHOD_GRADCAM_PLUSPLUS


class XGradCAM(BaseCAM):
    """XGrad-CAM: channel weights sum(G A) / (sum(A) + 1e-7)."""

    method_id = _native.METHOD_XGRADCAM


class LayerCAM(BaseCAM):
    """LayerCAM: the channel sum of max(gradients, 0) x activations."""

    method_id = _native.METHOD_LAYERCAM


class EigenCAM(BaseCAM):
    """EigenCAM: the activations projected on their first principal component.

    Uses no gradients; targets only choose the class and score reported by :meth:`explain`.
    The sign of a principal component is arbitrary; see the engine's documented sign rule.
    """

    method_id = _native.METHOD_EIGENCAM
    uses_gradients = False


class EigenGradCAM(BaseCAM):
    """EigenGradCAM: first principal component of gradients x activations."""

    method_id = _native.METHOD_EIGENGRADCAM
