"""swiftcam: Grad-CAM for torchvision ResNets, computed by a Swift engine.

    >>> import swiftcam
    >>> model = swiftcam.load("resnet50.safetensors")        # or a state dict
    >>> logits = model(x)                                   # x: (N, 3, H, W) float32
    >>> cam = swiftcam.GradCAM(model, target_layers=["layer4"])
    >>> heat = cam(x, targets=[swiftcam.ClassifierOutputTarget(281)])   # (N, H, W) in [0, 1]

The names follow pytorch-grad-cam, so switching is mostly a changed import. Inputs that are
float32 C-contiguous NumPy arrays reach the engine without a copy.

On import, when ``OPENBLAS_CORETYPE`` is unset and the CPU has AVX-512, it is set to
``SkylakeX`` before the engine's OpenBLAS loads (Debian's OpenBLAS 0.3.21 otherwise picks
kernels about 5x slower). A value set by the user is respected.
"""

# NumPy first: its own bundled OpenBLAS is loaded (and picks its kernels) before the variable
# below changes; only the engine's OpenBLAS (loaded with swiftcam._native) should see it.
import numpy as _numpy  # noqa: F401

from ._blas_env import configure_openblas_coretype as _configure_openblas_coretype

_configure_openblas_coretype()

from . import _native  # noqa: E402,F401  (loads libswiftcam.so and OpenBLAS)
from ._version import __version__  # noqa: E402
from .cam import (BaseCAM, EigenCAM, EigenGradCAM, GradCAM, GradCAMElementWise,  # noqa: E402
                  GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM)
from .errors import (BufferSizeError, FileFormatError, InputShapeError,  # noqa: E402
                     InvalidInputError, ModelClosedError, ModelFileNotFoundError,
                     OutOfMemoryError, SwiftCAMError, SwiftCAMIOError, UnknownLayerError,
                     UnsupportedModelError, WeightsError)
from .model import Model, load  # noqa: E402
from .pth import UnsafePickleError, read_pth  # noqa: E402
from .torch_interop import TorchModel, from_torch  # noqa: E402
from .explanation import Explanation, explain  # noqa: E402
from .demo import load_demo_model  # noqa: E402
from .perturbation_cams import AblationCAM, ScoreCAM  # noqa: E402
from .guided_backprop import GuidedBackpropReLUModel, GuidedGradCAM  # noqa: E402
from .fullgrad import FullGrad  # noqa: E402
from . import metrics  # noqa: E402
from . import demo  # noqa: E402
from .result import CAMResult  # noqa: E402
from .runtime import blas_core_name, gemm_kernel, get_num_threads, set_num_threads  # noqa: E402
from .utils.model_targets import (ClassifierOutputLinearTarget,  # noqa: E402
                                  ClassifierOutputSoftmaxTarget, ClassifierOutputTarget)

__all__ = [
    "__version__",
    "load", "Model", "read_pth", "from_torch", "TorchModel", "UnsafePickleError",
    "explain", "Explanation", "load_demo_model", "demo",
    "BaseCAM", "GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus", "XGradCAM",
    "LayerCAM", "EigenCAM", "EigenGradCAM", "CAMResult", "ScoreCAM", "AblationCAM",
    "GuidedBackpropReLUModel", "GuidedGradCAM", "FullGrad", "metrics",
    "ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget", "ClassifierOutputLinearTarget",
    "blas_core_name", "gemm_kernel", "set_num_threads", "get_num_threads",
    "SwiftCAMError", "InvalidInputError", "InputShapeError", "BufferSizeError", "WeightsError",
    "UnsupportedModelError", "FileFormatError", "SwiftCAMIOError", "ModelFileNotFoundError",
    "UnknownLayerError", "OutOfMemoryError", "ModelClosedError",
]
