"""Live comparisons with torchvision and pytorch-grad-cam on full-size models.

Skipped without torch (the other tests cover the same code paths on the stored fixtures).
The torch environment of the repository is .venv-torch:

    .venv-torch/bin/pip install -e . --no-build-isolation
    .venv-torch/bin/python -m pytest python/tests/test_live_torch.py
"""

import contextlib
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import swiftcam  # noqa: E402
from swiftcam import _safetensors  # noqa: E402

ARCHITECTURES = ("resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2")
SHAPES = ((2, 3, 224, 224), (2, 3, 160, 200))
LOGIT_TOLERANCE = 1e-5  # x max |logit|, as for the fixtures
ACTIVATION_TOLERANCE = 1e-5  # x max |activation| of the layer
CAM_TOLERANCE = 1e-5  # absolute, maps in [0, 1]


def _random_model(arch, seed=0):
    """A random-init torchvision model in eval mode with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
                assert module.weight.shape == (c,)
    return model.eval()


_MODELS = {}


def _models(arch):
    """(torch model, swiftcam model), built once per architecture."""
    if arch not in _MODELS:
        reference = _random_model(arch)
        _MODELS[arch] = (reference, swiftcam.load(reference.state_dict()))
    return _MODELS[arch]


def _input(shape, seed=2):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_logits_match_torchvision(arch, shape):
    reference, model = _models(arch)
    x = _input(shape)
    with torch.no_grad():
        expected = reference(x).numpy()
    assert model.arch == arch
    assert model.num_classes == 1000
    logits = model(x.numpy())
    error = np.abs(logits - expected).max() / np.abs(expected).max()
    assert error <= LOGIT_TOLERANCE


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_activations_match_torchvision(arch):
    reference, model = _models(arch)
    x = _input(SHAPES[1])
    modules = dict(reference.named_modules())
    names = ["conv1", "maxpool", "layer1", "layer2.0", "layer3", "layer4", "avgpool"]
    recorded = {}
    handles = [modules[name].register_forward_hook(
        lambda module, inputs, output, name=name: recorded.__setitem__(name, output.clone()))
        for name in names]
    try:
        with torch.no_grad():
            reference(x)
    finally:
        for handle in handles:
            handle.remove()
    activations = model.activations(x, layers=names)
    for name in names:
        expected = recorded[name].numpy()
        error = np.abs(activations[name] - expected).max() / np.abs(expected).max()
        assert error <= ACTIVATION_TOLERANCE, name


def test_torch_tensor_input_and_safetensors_file(tmp_path):
    reference, model = _models("resnet18")
    path = tmp_path / "resnet18.safetensors"
    _safetensors.write(path, {k: v.numpy() for k, v in reference.state_dict().items()})
    x = _input(SHAPES[1])
    with swiftcam.load(path) as from_file:
        assert from_file.arch == "resnet18"
        np.testing.assert_array_equal(from_file(x), model(x.numpy()))
    # A float32 contiguous torch tensor is read in place through its NumPy view.
    model(x)
    assert model._last_input_address() == x.data_ptr()


def test_torch_module_can_be_passed_to_load():
    reference, model = _models("resnet18")
    with swiftcam.load(reference) as loaded:
        x = _input((1, 3, 64, 64)).numpy()
        np.testing.assert_array_equal(loaded(x), model(x))


# -- pytorch-grad-cam ---------------------------------------------------------------------------

METHODS = ("GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus", "XGradCAM",
           "LayerCAM", "EigenCAM", "EigenGradCAM")
SIGN_AMBIGUOUS = ("EigenCAM", "EigenGradCAM")


@contextlib.contextmanager
def _projection_signs(signs):
    """pytorch-grad-cam with the i-th get_2d_projection call (one per target layer, in order)
    multiplied by signs[i]: the maps it would give with other SVD signs (negation is exact)."""
    from pytorch_grad_cam import base_cam, eigen_cam, eigen_grad_cam, fullgrad_cam
    modules = (base_cam, eigen_cam, eigen_grad_cam, fullgrad_cam)
    original = base_cam.get_2d_projection
    calls = []

    def patched(batch):
        sign = signs[len(calls)]
        calls.append(sign)
        return -original(batch) if sign < 0 else original(batch)

    saved = [(m, m.get_2d_projection) for m in modules]
    for module in modules:
        module.get_2d_projection = patched
    try:
        yield
    finally:
        for module, function in saved:
            module.get_2d_projection = function


@pytest.fixture(scope="module")
def grad_cam():
    return pytest.importorskip("pytorch_grad_cam")


def _reference_cam(grad_cam, method, reference, layers, x, classes):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    modules = dict(reference.named_modules())
    cls = getattr(grad_cam, method)
    targets = None if classes is None else [ClassifierOutputTarget(int(c)) for c in classes]
    with cls(model=reference, target_layers=[modules[name] for name in layers]) as cam:
        return cam(input_tensor=x, targets=targets)


# Two-layer SVD methods need a reference run per sign pattern (~10 s each); the fixtures
# (basic, bottleneck) cover them with every sign pattern stored.
CAM_CASES = [(m, ("layer4",)) for m in METHODS] + [
    (m, ("layer3", "layer4")) for m in METHODS if m not in SIGN_AMBIGUOUS]


@pytest.mark.parametrize("method, layers", CAM_CASES,
                         ids=[f"{m}-{'+'.join(l)}" for m, l in CAM_CASES])
def test_cams_match_pytorch_grad_cam_on_resnet50(grad_cam, method, layers):
    reference, model = _models("resnet50")
    x = _input(SHAPES[1], seed=5)
    logits = model(x.numpy())
    classes = np.argsort(-logits, axis=1)[:, 1]  # the second-best class of each image
    expected = _reference_cam(grad_cam, method, reference, layers, x, classes)
    candidates = [expected]
    if method in SIGN_AMBIGUOUS:
        for signs in itertools.product((1, -1), repeat=len(layers)):
            if min(signs) < 0:
                with _projection_signs(signs):
                    candidates.append(
                        _reference_cam(grad_cam, method, reference, layers, x, classes))
    cam = getattr(swiftcam, method)(model, target_layers=list(layers))
    heatmaps = cam(x, [swiftcam.ClassifierOutputTarget(int(c)) for c in classes])
    assert heatmaps.shape == expected.shape == (2, 160, 200)
    for image in range(2):
        error = min(np.abs(heatmaps[image] - c[image]).max() for c in candidates)
        assert error <= CAM_TOLERANCE, f"image {image}: {error:.3g}"


@pytest.mark.parametrize("eigen_smooth", [False, True])
def test_fullgrad_matches_pytorch_grad_cam_on_resnet18(grad_cam, eigen_smooth):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    reference, model = _models("resnet18")
    x = _input((2, 3, 160, 160), seed=7)
    classes = np.argsort(-model(x.numpy()), axis=1)[:, 1]  # the second-best class of each image
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    candidates = []
    for signs in ([1], [-1]) if eigen_smooth else ([1],):
        with _projection_signs(signs), grad_cam.FullGrad(model=reference, target_layers=[]) as cam:
            candidates.append(cam(input_tensor=x, targets=targets, eigen_smooth=eigen_smooth))
    heatmaps = swiftcam.FullGrad(model)(x, [swiftcam.ClassifierOutputTarget(int(c))
                                            for c in classes], eigen_smooth=eigen_smooth)
    assert heatmaps.shape == candidates[0].shape == (2, 160, 160)
    for image in range(2):
        error = min(np.abs(heatmaps[image] - c[image]).max() for c in candidates)
        assert error <= CAM_TOLERANCE, f"image {image}: {error:.3g}"


def test_argmax_targets_match_pytorch_grad_cam(grad_cam):
    reference, model = _models("resnet50")
    x = _input(SHAPES[1], seed=6)
    expected = _reference_cam(grad_cam, "GradCAM", reference, ("layer4",), x, None)
    heatmaps = swiftcam.GradCAM(model, ["layer4"])(x)
    assert np.abs(heatmaps - expected).max() <= CAM_TOLERANCE


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torch_save_file_loads_where_torch_cannot_be_imported(tmp_path, arch):
    """A torchvision state dict written by torch.save loads in a process where importing torch
    is impossible, and gives torchvision's logits (tolerance as for the forward pass)."""
    import subprocess
    import sys

    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)().eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    x = np.random.default_rng(3).standard_normal((2, 3, 160, 200)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    child = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, swiftcam\n"
        f"model = swiftcam.load({str(path)!r})\n"
        f"np.save({str(tmp_path / 'logits.npy')!r}, model(np.load({str(tmp_path / 'x.npy')!r})))\n"
        "assert sys.modules['torch'] is None\n")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    logits = np.load(tmp_path / "logits.npy")
    assert np.abs(logits - expected).max() <= 1e-5 * np.abs(expected).max()
