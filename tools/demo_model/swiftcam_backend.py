"""swiftcam as the CAM backend of evaluate.py, so the pointing-game table can be reproduced with
the engine this repository ships:

    .venv-torch/bin/python tools/demo_model/evaluate.py --backend swiftcam_backend:swiftcam_backend

The torch model is converted once with swiftcam.from_torch and reused for every batch.
"""

import swiftcam

_METHODS = {"GradCAM": swiftcam.GradCAM, "GradCAM++": swiftcam.GradCAMPlusPlus,
            "LayerCAM": swiftcam.LayerCAM, "XGradCAM": swiftcam.XGradCAM}
_converted = {}


def swiftcam_backend(model, layer_name, method, inputs, labels):
    """Heatmaps (N, H, W) in [0, 1] from swiftcam, targets = the given classes."""
    if id(model) not in _converted:
        _converted[id(model)] = swiftcam.from_torch(model)
    cam = _METHODS[method](_converted[id(model)], target_layers=[layer_name])
    return cam(input_tensor=inputs.numpy(), targets=[int(label) for label in labels])
