"""swiftcam as the CAM backend of evaluate.py, so the pointing-game table can be reproduced with
the engine this repository ships:

    .venv-torch/bin/python tools/demo_model/evaluate.py --backend swiftcam_backend:swiftcam_backend

The torch model is converted once with swiftcam.from_torch and reused for every batch.
"""

import swiftcam

_METHODS = {"GradCAM": swiftcam.GradCAM, "GradCAM++": swiftcam.GradCAMPlusPlus,
            "LayerCAM": swiftcam.LayerCAM, "XGradCAM": swiftcam.XGradCAM,
            "HiResCAM": swiftcam.HiResCAM, "EigenCAM": swiftcam.EigenCAM,
            "ScoreCAM": swiftcam.ScoreCAM, "AblationCAM": swiftcam.AblationCAM}
#: Masked (ScoreCAM) or ablated (AblationCAM) copies per engine call: 16 and 32 were equally
#: fast on the demo model (160x160), 64 and 128 slower; 32 divides its 64 and 128 channels.
_PERTURBATION_BATCH = 32
_converted = {}


def swiftcam_backend(model, layer_name, method, inputs, labels):
    """Heatmaps (N, H, W) in [0, 1] from swiftcam, targets = the given classes.

    ``layer_name`` is None for FullGrad, which uses every layer with a bias.
    """
    if id(model) not in _converted:
        _converted[id(model)] = swiftcam.from_torch(model)
    converted = _converted[id(model)]
    if method == "FullGrad":
        cam = swiftcam.FullGrad(converted)
    elif method in ("ScoreCAM", "AblationCAM"):
        cam = _METHODS[method](converted, target_layers=[layer_name],
                               batch_size=_PERTURBATION_BATCH)
    else:
        cam = _METHODS[method](converted, target_layers=[layer_name])
    return cam(input_tensor=inputs.numpy(), targets=[int(label) for label in labels])
