"""Helpers laid out as in pytorch-grad-cam, so ``pytorch_grad_cam.utils.X`` becomes
``swiftcam.utils.X``."""

from .model_targets import (ClassifierOutputLinearTarget, ClassifierOutputSoftmaxTarget,
                            ClassifierOutputTarget)

__all__ = ["ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget",
           "ClassifierOutputLinearTarget"]
