"""Guided backpropagation and Guided Grad-CAM, with pytorch-grad-cam's names.

    gb_model = GuidedBackpropReLUModel(model)
    gb = gb_model(x, target_category=281)          # (H, W, 3) float32, one image, as the reference
    cam_mask = GradCAM(model, ["layer4"])(x, [ClassifierOutputTarget(281)])[0]
    cam_gb = deprocess_image(guided_gradcam(cam_mask, gb))   # (H, W, 3) uint8

The gradient of the target logit with respect to the input, where every ReLU of the network
passes a gradient only where the gradient is positive and the forward input was positive
(Springenberg et al. 2015): the engine's ``guided_backward`` (checked against
``GuidedBackpropReLUModel`` in the fixtures). :class:`GuidedGradCAM` runs both for a batch.
"""

import operator

import numpy as np

from . import _native
from ._seeds import seeds_for_targets
from .cam import GradCAM
from .errors import InvalidInputError
from .model import Model
from .utils.image import deprocess_image

__all__ = ["GuidedBackpropReLUModel", "GuidedGradCAM", "guided_gradcam", "deprocess_image"]


def _check_model(model):
    if not isinstance(model, Model):
        hint = ""
        if callable(getattr(model, "state_dict", None)):
            hint = "; convert a torch model with swiftcam.from_torch(model)"
        raise TypeError(f"model: expected a swiftcam.Model, got {type(model).__name__}{hint}")


class GuidedBackpropReLUModel:
    """Guided backpropagation, as ``pytorch_grad_cam.GuidedBackpropReLUModel``.

    Parameters
    ----------
    model : swiftcam.Model
    device : None or "cpu"
        Accepted for signature compatibility.
    """

    def __init__(self, model, device=None):
        _check_model(model)
        if device is not None and str(device) != "cpu":
            raise InvalidInputError(f"device: swiftcam runs on the CPU, got {device!r}")
        self.model = model

    def forward(self, input_img):
        """The logits, as the reference's ``forward``."""
        return self.model(input_img)

    def __call__(self, input_img, target_category=None):
        """Guided gradient of one image's target logit with respect to the image.

        Parameters
        ----------
        input_img : array_like, (1, C, H, W)
            One image (the reference explains only the first image of a batch; swiftcam
            raises for a batch, see :meth:`gradients`).
        target_category : int, optional
            The class; None takes the highest logit.

        Returns
        -------
        numpy.ndarray, float32, (H, W, C)
        """
        batch = self.model._input(input_img, "input_img")
        if batch.shape[0] != 1:
            raise InvalidInputError(
                f"input_img: expected one image (1, C, H, W), got a batch of {batch.shape[0]}; "
                "the reference explains only the first image; use gradients(x, targets) for a "
                "batch")
        targets = None if target_category is None else [_category(target_category)]
        return self.gradients(batch, targets)[0].transpose(1, 2, 0)

    def gradients(self, input_tensor, targets=None):
        """Guided gradients of a batch, one target per image (None: each image's argmax).

        Returns float32 (N, C, H, W). Targets are class indices or target objects with a
        ``gradient`` method (``ClassifierOutputTarget`` and the like).
        """
        model = self.model
        batch = model._input(input_tensor, "input_tensor")
        trace = model._trace(batch, [_native.LAYER_INPUT], "input_tensor")
        try:
            logits = np.empty((batch.shape[0], model.num_classes), dtype=np.float32)
            trace.logits(logits)
            seeds = seeds_for_targets(targets, logits)
            output = np.empty(batch.shape, dtype=np.float32)
            trace.guided_backward(seeds.seeds, 1, [output])
        finally:
            trace.close()
        return output

    def __repr__(self):
        return f"GuidedBackpropReLUModel({self.model!r})"


def _category(category):
    if isinstance(category, bool):
        raise TypeError(f"target_category must be an int class index, got {category!r}")
    if callable(getattr(category, "gradient", None)):
        return category
    try:
        return operator.index(category)
    except TypeError:
        raise TypeError(f"target_category must be an int class index, got "
                        f"{type(category).__name__}") from None


def guided_gradcam(cam_mask, guided_gradients):
    """Guided Grad-CAM as in the reference's example: ``cam_mask[..., None] * gb``.

    ``cam_mask`` (H, W) or (N, H, W); ``guided_gradients`` (H, W, C) or (N, H, W, C)
    (the layout :class:`GuidedBackpropReLUModel` returns). float32, same layout as
    ``guided_gradients``; pass it to :func:`deprocess_image` to view it.
    """
    cam_mask = np.asarray(cam_mask, dtype=np.float32)
    gb = np.asarray(guided_gradients, dtype=np.float32)
    if cam_mask.shape != gb.shape[:-1]:
        raise InvalidInputError(f"cam_mask of shape {cam_mask.shape} does not match guided "
                                f"gradients of shape {gb.shape} (expected {gb.shape[:-1]})")
    return cam_mask[..., None] * gb


class GuidedGradCAM:
    """Guided Grad-CAM for a batch: a CAM method's map times the guided gradients.

    Parameters
    ----------
    model : swiftcam.Model
    target_layers : str or sequence of str
    cam_method : class
        A swiftcam CAM class (default :class:`~swiftcam.GradCAM`).

    Calling it returns float32 (N, H, W, C): ``cam[n][..., None] * gb[n]`` with ``gb[n]`` the
    guided gradient (H, W, C) of image n for the same target as its CAM. The reference's
    example takes the guided gradient of the argmax class whatever the CAM's targets; with
    ``targets=None`` the two agree.
    """

    def __init__(self, model, target_layers, cam_method=GradCAM):
        _check_model(model)
        self.cam = cam_method(model, target_layers)
        self.guided = GuidedBackpropReLUModel(model)

    def __call__(self, input_tensor, targets=None, aug_smooth=False, eigen_smooth=False):
        model = self.cam.model
        batch = model._input(input_tensor, "input_tensor")
        result = self.cam.explain(batch, targets, aug_smooth=aug_smooth,
                                  eigen_smooth=eigen_smooth)
        if targets is None:
            targets = [int(c) for c in np.argmax(result.logits, axis=1)]
        gb = self.guided.gradients(batch, targets).transpose(0, 2, 3, 1)
        return guided_gradcam(result.heatmaps, gb)

    def __repr__(self):
        return f"GuidedGradCAM({self.cam!r})"
