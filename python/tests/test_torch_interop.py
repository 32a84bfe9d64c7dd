"""swiftcam.from_torch: a model from a live torch ResNet, with its modules usable as layers.

The torch tests skip without torch (run them in the torch venv, see test_live_torch.py); the
duck-typing tests at the end need no torch and prove from_torch never imports it.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import swiftcam
from swiftcam.errors import UnknownLayerError
from swiftcam.pth import read_pth
from swiftcam.torch_interop import TorchModel, from_torch, resolve_layer

DATA = Path(__file__).resolve().parent / "data" / "pth"
LOGIT_TOLERANCE = 1e-5  # x max |logit|
CAM_TOLERANCE = 1e-5  # absolute, maps in [0, 1]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def net(torch):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
    return model.eval()


@pytest.fixture(scope="module")
def model(net):
    return from_torch(net)


@pytest.fixture(scope="module")
def x(torch):
    return torch.randn(2, 3, 160, 200, generator=torch.Generator().manual_seed(2))


def test_logits_match_torch(torch, net, model, x):
    assert isinstance(model, TorchModel) and isinstance(model, swiftcam.Model)
    with torch.no_grad():
        reference = net(x).numpy()
    actual = model(x.numpy())
    error = np.abs(actual - reference).max() / np.abs(reference).max()
    assert error < LOGIT_TOLERANCE, error
    assert model.torch_module is net
    assert "from torch ResNet" in repr(model)


def test_modules_resolve_to_layer_names(net, model):
    expected = {
        "conv1": net.conv1, "bn1": net.bn1, "relu": net.relu, "maxpool": net.maxpool,
        "layer1.0": net.layer1[0], "layer3.0": net.layer3[0], "layer4.1": net.layer4[-1],
        "layer4": net.layer4, "avgpool": net.avgpool,
    }
    for name, module in expected.items():
        assert model.layer_name_for(module) == name
        assert model._layer_name(module) == name
        assert resolve_layer(model, module) == name
    assert resolve_layer(model, "layer2") == "layer2"
    assert model._layer_name(object()) is None
    assert model._layer_name(net) == ""


def test_modules_that_cannot_be_targeted(torch, net, model):
    for module, what in ((net.fc, "module 'fc'"), (net.layer4[-1].conv1, "'layer4.1.conv1'"),
                         (net, "the network itself")):
        with pytest.raises(UnknownLayerError, match=f"{what}.*cannot be targeted"):
            model.layer_name_for(module)
    other = torch.nn.Sequential(torch.nn.ReLU())
    with pytest.raises(UnknownLayerError, match="not a module of the ResNet"):
        model.layer_name_for(other)
    with pytest.raises(UnknownLayerError, match="not a module of the ResNet"):
        model.activations(np.zeros((1, 3, 32, 32), np.float32), layers=[other[0]])


def test_activations_by_module_equal_torch_hooks(torch, net, model, x):
    captured = {}
    hook = net.layer4[-1].register_forward_hook(
        lambda module, inputs, output: captured.setdefault("layer4.1", output.detach()))
    try:
        with torch.no_grad():
            net(x)
    finally:
        hook.remove()
    by_module = model.activations(x.numpy(), layers=[net.layer4[-1], net.layer3])
    assert list(by_module) == ["layer4.1", "layer3"]
    by_name = model.activations(x.numpy(), layers=["layer4.1"])
    np.testing.assert_array_equal(by_module["layer4.1"], by_name["layer4.1"])
    reference = captured["layer4.1"].numpy()
    error = np.abs(by_module["layer4.1"] - reference).max() / np.abs(reference).max()
    assert error < 1e-5, error
    # A single module (nn.Sequential is iterable, but means the stage itself here).
    assert list(model.activations(x.numpy(), layers=net.layer4)) == ["layer4"]


def test_gradcam_with_module_targets_equals_pytorch_grad_cam(torch, net, model, x):
    pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = [281, 7]
    for layers in ([net.layer4[-1]], [net.layer3[0], net.layer4]):
        with pytorch_grad_cam.GradCAM(model=net, target_layers=layers) as reference_cam:
            reference = reference_cam(input_tensor=x,
                                      targets=[ClassifierOutputTarget(c) for c in classes])
        cam = swiftcam.GradCAM(model=model, target_layers=layers)
        assert cam.target_layers == tuple(model.layer_name_for(m) for m in layers)
        actual = cam(x.numpy(), targets=[swiftcam.ClassifierOutputTarget(c) for c in classes])
        assert actual.shape == reference.shape
        assert np.abs(actual - reference).max() < CAM_TOLERANCE


def test_dataparallel_wrapper(torch, net, x):
    parallel = torch.nn.DataParallel(net)
    wrapped = from_torch(parallel)
    assert wrapped.layer_name_for(net.layer4[-1]) == "layer4.1"
    assert wrapped._layer_name(parallel) == "" and wrapped._layer_name(net) == ""
    with torch.no_grad():
        reference = net(x).numpy()
    error = np.abs(wrapped(x.numpy()) - reference).max() / np.abs(reference).max()
    assert error < LOGIT_TOLERANCE


def test_weak_references_only(torch):
    torchvision = pytest.importorskip("torchvision")
    import gc
    import weakref

    network = torchvision.models.resnet18(weights=None).eval()
    model = from_torch(network)
    alive = weakref.ref(network)
    del network
    gc.collect()
    assert alive() is None and model.torch_module is None
    assert model(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 1000)


def test_plain_models_reject_modules_with_a_hint(torch, net):
    plain = swiftcam.load(net.state_dict())
    with pytest.raises(TypeError, match="from_torch"):
        resolve_layer(plain, net.layer4)


def test_package_exports():
    # Needs `from .torch_interop import from_torch` in swiftcam/__init__.py (skips until then).
    if not hasattr(swiftcam, "from_torch"):
        pytest.skip("swiftcam.from_torch is not exported yet")
    assert swiftcam.from_torch is from_torch


# -- no torch needed ------------------------------------------------------------------------

class _FakeTensor:
    """Duck-types the part of torch.Tensor from_torch uses."""

    def __init__(self, array):
        self.array = array

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.array


class _FakeModule:
    def __init__(self, name, tree=None, state=None):
        self.name, self._tree, self._state = name, tree, state

    def state_dict(self):
        return self._state

    def named_modules(self):
        return iter(self._tree)


def _fake_network():
    state = read_pth(DATA / "resnet_tiny.pth")
    names = {""} | {"relu", "maxpool", "avgpool"}
    for key in state:
        parts = key.split(".")[:-1]
        names |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    modules = {name: _FakeModule(name) for name in sorted(names) if name}
    root = _FakeModule("", tree=None, state={k: _FakeTensor(v) for k, v in state.items()})
    root._tree = [("", root)] + list(modules.items())
    return root, modules


def test_duck_typed_module_without_torch():
    root, modules = _fake_network()
    model = from_torch(root)
    assert model.layer_name_for(modules["layer4.0"]) == "layer4.0"
    assert model.layer_name_for(modules["layer4"]) == "layer4"
    expected = np.load(DATA / "expected.npz")
    logits = model(expected["input"])
    error = np.abs(logits - expected["logits"]).max() / np.abs(expected["logits"]).max()
    assert error < LOGIT_TOLERANCE
    cam = swiftcam.GradCAM(model=model, target_layers=[modules["layer4"]])
    by_name = swiftcam.GradCAM(model=model, target_layers=["layer4"])
    np.testing.assert_array_equal(cam(expected["input"]), by_name(expected["input"]))
    with pytest.raises(TypeError, match="from_torch expects a torch.nn.Module"):
        from_torch({"conv1.weight": np.zeros((1, 3, 7, 7), np.float32)})


def test_from_torch_never_imports_torch():
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None   # any `import torch` now raises ImportError
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        import swiftcam, swiftcam.torch_interop
        from test_torch_interop import _fake_network
        root, modules = _fake_network()
        model = swiftcam.torch_interop.from_torch(root)
        assert model.layer_name_for(modules["layer4"]) == "layer4"
        assert sys.modules["torch"] is None
        print("ok")
    """)
    package_root = str(Path(swiftcam.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_imagenet_class_names_file():
    import json

    path = Path(swiftcam.__file__).resolve().parent / "data" / "imagenet_classes.json"
    names = json.loads(path.read_text(encoding="utf-8"))
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[281] == "tabby"
    try:
        from torchvision.models import ResNet50_Weights
    except ImportError:
        return
    assert names == list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
