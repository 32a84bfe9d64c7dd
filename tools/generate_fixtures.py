"""Generate swiftcam's reference fixtures with torch and pytorch-grad-cam.

Developer tool.  For each case (a small, reduced-width torchvision ResNet, see
``small_resnet.py``) it writes, under ``Tests/Fixtures/<case>/``:

* ``weights.safetensors``  - the model's state_dict (torchvision key names),
* ``expected.safetensors`` - input, logits, every hooked layer's activation
  and score gradient, and the heatmaps of pytorch-grad-cam 1.5.7; also its
  ScoreCAM / AblationCAM maps, aug_smooth maps, Guided Grad-CAM, metric
  values (ROAD with noise 0, RISE's deletion / insertion), ROAD imputed
  images and FullGrad maps (``record_extras``),
* ``meta.json``            - the case description and the list of CAMs.

It also measures the reference's own numerical noise (float32 vs float64
forward of the same weights) and prints it, so that test tolerances can be
chosen.  The output is deterministic: re-running it rewrites identical files.
The format is documented in ``Tests/Fixtures/README.md``.

Usage (from the repository root)::

    .venv-torch/bin/python tools/generate_fixtures.py [--output-dir DIR]
"""

import os

# Single-threaded everywhere (shared machine, and bit-for-bit reproducible
# reductions).  Must be set before numpy / torch load their BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import pytorch_grad_cam  # noqa: E402  (its __init__ imports every method)
from pytorch_grad_cam import (  # noqa: E402
    EigenCAM, EigenGradCAM, GradCAM, GradCAMElementWise, GradCAMPlusPlus,
    HiResCAM, LayerCAM, XGradCAM)
from pytorch_grad_cam.utils.model_targets import (  # noqa: E402
    ClassifierOutputSoftmaxTarget, ClassifierOutputTarget)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from small_resnet import (  # noqa: E402
    BLOCKS, SmallResNet, randomize_batch_norm, reference_resnet)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "Tests" / "Fixtures"

METHODS = {
    cls.__name__: cls
    for cls in (GradCAM, HiResCAM, GradCAMElementWise, GradCAMPlusPlus,
                XGradCAM, LayerCAM, EigenCAM, EigenGradCAM)
}
ALL_METHODS = list(METHODS)
EIGEN_METHODS = ("EigenCAM", "EigenGradCAM")

# Modules of pytorch-grad-cam that call get_2d_projection (patched to record
# the CAMs obtained with the opposite SVD sign).
PROJECTION_MODULES = [
    pytorch_grad_cam.base_cam, pytorch_grad_cam.eigen_cam,
    pytorch_grad_cam.eigen_grad_cam, pytorch_grad_cam.hirescam,
    pytorch_grad_cam.grad_cam_elementwise, pytorch_grad_cam.layer_cam,
    pytorch_grad_cam.fullgrad_cam,
]


@dataclass(frozen=True)
class CamSpec:
    """One pytorch-grad-cam invocation."""

    method: str
    target_layers: tuple
    targets: str = "class"  # "class" | "softmax" | "none"
    eigen_smooth: bool = False
    # "chosen": the case's gradient targets; "lowest": per image the class
    # with the most negative fc.weight[c] . pooled features, which often
    # gives an all-negative map, i.e. an all-zero CAM (degenerate case).
    classes: str = "chosen"

    @property
    def cam_id(self):
        suffix = {"class": "", "softmax": "_softmax", "none": "_argmax"}
        name = f"{self.method}_{'+'.join(self.target_layers)}"
        name += suffix[self.targets]
        if self.classes == "lowest":
            name += "_lowestclass"
        if self.eigen_smooth:
            name += "_eigensmooth"
        return name

    @property
    def sign_ambiguous(self):
        """True if the map depends on the arbitrary sign of an SVD vector."""
        return self.eigen_smooth or self.method in EIGEN_METHODS


@dataclass(frozen=True)
class Case:
    """One reduced-width ResNet with its input."""

    name: str
    block: str
    layers: tuple
    divisor: int  # stage widths are 64/128/256/512 divided by this
    groups: int
    width_per_group: int
    num_classes: int
    input_shape: tuple
    seed: int
    num_batches_tracked: int
    cams: tuple


def full_cam_plan(inner_block):
    """Every method on four target-layer sets, plus the special targets."""
    layer_sets = [("layer4",), ("layer3",), (inner_block,),
                  ("layer3", "layer4")]
    plan = [CamSpec(m, layers) for layers in layer_sets for m in ALL_METHODS]
    plan += [
        CamSpec("GradCAM", ("layer4",), eigen_smooth=True),
        CamSpec("GradCAMPlusPlus", ("layer4",), eigen_smooth=True),
        CamSpec("GradCAM", ("layer4",), targets="none"),
        CamSpec("GradCAM", ("layer3",), targets="softmax"),
        CamSpec("GradCAM", ("layer4",), classes="lowest"),
    ]
    return tuple(plan)


GROUPED_PLAN = tuple(
    [CamSpec(m, ("layer4",)) for m in ALL_METHODS]
    + [CamSpec(m, ("layer4.0",))
       for m in ("GradCAM", "HiResCAM", "GradCAMPlusPlus", "EigenCAM")]
    + [CamSpec("GradCAM", ("layer3", "layer4")),
       CamSpec("GradCAM", ("layer4",), targets="none"),
       CamSpec("GradCAM", ("layer4",), eigen_smooth=True),
       CamSpec("GradCAM", ("layer4",), classes="lowest")])

WIDE_PLAN = (
    CamSpec("GradCAM", ("layer4",)),
    CamSpec("GradCAMPlusPlus", ("layer4",)),
    CamSpec("XGradCAM", ("layer4",)),
    CamSpec("EigenCAM", ("layer4",)),
    CamSpec("GradCAM", ("layer3",)),
)

CASES = (
    Case("basic", "basic", (1, 2, 1, 1), divisor=4, groups=1,
         width_per_group=64, num_classes=10, input_shape=(2, 3, 67, 45),
         seed=1001, num_batches_tracked=1234,
         cams=full_cam_plan("layer2.0")),
    Case("bottleneck", "bottleneck", (1, 1, 2, 1), divisor=8, groups=1,
         width_per_group=64, num_classes=7, input_shape=(2, 3, 61, 70),
         seed=2002, num_batches_tracked=5678,
         cams=full_cam_plan("layer3.0")),
    Case("grouped", "bottleneck", (1, 1, 1, 2), divisor=8, groups=4,
         width_per_group=8, num_classes=5, input_shape=(3, 3, 64, 64),
         seed=3006, num_batches_tracked=91011, cams=GROUPED_PLAN),
    Case("wide", "bottleneck", (1, 1, 1, 1), divisor=8, groups=1,
         width_per_group=128, num_classes=4, input_shape=(1, 3, 96, 80),
         seed=4014, num_batches_tracked=121314, cams=WIDE_PLAN),
)


# --------------------------------------------------------------------------
# Model, input and targets
# --------------------------------------------------------------------------

def build_case(case):
    """Seeded model (eval mode) and input tensor for a case."""
    torch.manual_seed(case.seed)
    block = BLOCKS[case.block]
    model = SmallResNet(block, list(case.layers), case.divisor,
                        num_classes=case.num_classes, groups=case.groups,
                        width_per_group=case.width_per_group)
    randomize_batch_norm(model, case.num_batches_tracked)
    model.eval()
    check_state_dict_keys(model, case)

    generator = torch.Generator().manual_seed(case.seed + 1)
    x = torch.randn(case.input_shape, generator=generator)
    return model, x


def check_state_dict_keys(model, case):
    """Same keys, in the same order, as the full-width torchvision model."""
    reference = reference_resnet(BLOCKS[case.block], list(case.layers),
                                 case.num_classes, case.groups,
                                 case.width_per_group)
    ours = list(model.state_dict())
    theirs = list(reference.state_dict())
    if ours != theirs:
        raise AssertionError(
            f"{case.name}: state_dict keys differ from torchvision: "
            f"{sorted(set(ours) ^ set(theirs))}")


def layer_names(model):
    """Hooked layers in forward order; a stage follows its last block."""
    names = ["conv1", "bn1", "relu", "maxpool"]
    for stage in range(1, 5):
        stage_name = f"layer{stage}"
        blocks = len(getattr(model, stage_name))
        names += [f"{stage_name}.{b}" for b in range(blocks)]
        names.append(stage_name)
    names.append("avgpool")
    return names


def class_mass(model, logits):
    """fc.weight[c] . pooled features = logit minus bias, per (image, class).

    At layer4 the GradCAM map of class c is this dot product taken at each
    position instead of on the average, so a class with positive mass is
    guaranteed a CAM that is not all zero.
    """
    return logits - model.fc.bias.detach()


def choose_targets(mass, seed):
    """Distinct classes with positive mass; image 0 not its argmax.

    Classes are tried in a seeded random order.  The case seeds were picked
    so that such a choice exists.
    """
    n, num_classes = mass.shape
    generator = torch.Generator().manual_seed(seed + 2)
    order = torch.randperm(num_classes, generator=generator).tolist()
    argmax = mass.argmax(dim=1).tolist()
    classes = []
    for image in range(n):
        for c in order:
            if (c not in classes and mass[image, c] > 0
                    and not (image == 0 and c == argmax[0])):
                classes.append(c)
                break
        else:
            raise AssertionError(
                f"no suitable target class for image {image}; change seed")
    return classes


def lowest_classes(mass):
    """Per image, the class with the most negative mass."""
    return mass.argmin(dim=1).tolist()


def without_inplace_relu(model):
    """Copy of the model whose ReLUs are out-of-place (same numerics)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    return model


# --------------------------------------------------------------------------
# Activations and gradients
# --------------------------------------------------------------------------

def record_layers(model, x, names, targets):
    """Logits, activations and d(score)/d(activation) of the named layers.

    score = sum_n logits[n, targets[n]].  The model must not use in-place
    ReLUs (the stem's ReLU would otherwise overwrite bn1's output).
    """
    modules = dict(model.named_modules())
    activations, gradients, handles = {}, {}, []

    def forward_hook(name):
        def hook(module, inputs, output):
            activations[name] = output

            def store(grad):
                gradients[name] = grad
            output.register_hook(store)
        return hook

    for name in names:
        handles.append(modules[name].register_forward_hook(forward_hook(name)))
    try:
        logits = model(x)
        rows = torch.arange(logits.shape[0])
        score = logits[rows, torch.tensor(targets)].sum()
        score.backward()
    finally:
        for handle in handles:
            handle.remove()
    model.zero_grad(set_to_none=True)
    activations = {k: v.detach().clone() for k, v in activations.items()}
    gradients = {k: v.clone() for k, v in gradients.items()}
    return logits.detach(), activations, gradients


def sanity_check(model, x, logits, acts, grads, targets, names):
    """Cheap consistency checks on the recorded tensors."""
    with torch.no_grad():
        direct = model(x)  # the torchvision model, with in-place ReLUs
    assert torch.equal(direct, logits), "hooked forward changed the logits"
    assert torch.equal(acts["relu"], acts["bn1"].clamp_min(0))
    for stage in range(1, 5):
        last = len(getattr(model, f"layer{stage}")) - 1
        key = f"layer{stage}"
        assert torch.equal(acts[key], acts[f"{key}.{last}"])
        assert torch.equal(grads[key], grads[f"{key}.{last}"])
    fc_rows = model.fc.weight.detach()[targets]
    assert torch.equal(grads["avgpool"][:, :, 0, 0], fc_rows)
    assert set(acts) == set(grads) == set(names)


# --------------------------------------------------------------------------
# pytorch-grad-cam
# --------------------------------------------------------------------------

@contextlib.contextmanager
def projection_signs(signs):
    """Negate get_2d_projection's result for the target layers flagged.

    pytorch-grad-cam calls get_2d_projection once per target layer, in
    target-layer order; ``signs[i]`` multiplies the i-th call's result.
    Negation is exact in floating point, so this yields exactly the CAM the
    library would give if the SVD had returned the opposite sign.
    """
    original = pytorch_grad_cam.base_cam.get_2d_projection
    calls = []

    def patched(activation_batch):
        sign = signs[len(calls)]
        calls.append(sign)
        projection = original(activation_batch)
        return -projection if sign < 0 else projection

    saved = [(m, m.get_2d_projection) for m in PROJECTION_MODULES]
    for module, _ in saved:
        module.get_2d_projection = patched
    try:
        yield calls
    finally:
        for module, function in saved:
            module.get_2d_projection = function
    if len(calls) != len(signs):
        raise AssertionError(f"expected {len(signs)} projections, "
                             f"saw {len(calls)}")


def spec_classes(spec, chosen, lowest):
    """The classes a CAM targets (None for the argmax)."""
    if spec.targets == "none":
        return None
    return lowest if spec.classes == "lowest" else chosen


def make_targets(spec, classes):
    if classes is None:
        return None
    target_class = {"class": ClassifierOutputTarget,
                    "softmax": ClassifierOutputSoftmaxTarget}[spec.targets]
    return [target_class(c) for c in classes]


def run_cam(model, x, spec, classes, signs=None):
    """One pytorch-grad-cam call; returns its float32 (N, H, W) output."""
    modules = dict(model.named_modules())
    target_layers = [modules[name] for name in spec.target_layers]
    method = METHODS[spec.method]
    guard = (projection_signs(signs) if signs is not None
             else contextlib.nullcontext())
    with guard, method(model=model, target_layers=target_layers) as cam:
        result = cam(input_tensor=x, targets=make_targets(spec, classes),
                     eigen_smooth=spec.eigen_smooth)
    assert result.dtype == np.float32
    assert result.shape == (x.shape[0],) + tuple(x.shape[2:])
    return result


def sign_variants(spec):
    """Non-identity sign patterns: mask string ('1' = negated) -> signs."""
    variants = {}
    for flips in itertools.product((0, 1), repeat=len(spec.target_layers)):
        if any(flips):
            mask = "".join(str(f) for f in flips)
            variants[mask] = [(-1 if f else 1) for f in flips]
    return variants


def run_all_cams(model, x, case, classes):
    """All CAMs of the case plus, if sign-ambiguous, their sign variants.

    ``classes`` maps a CAM id to its target classes (None: argmax).
    """
    cams, flipped = {}, {}
    for spec in case.cams:
        cams[spec.cam_id] = run_cam(model, x, spec, classes[spec.cam_id])
        if spec.sign_ambiguous:
            for mask, signs in sign_variants(spec).items():
                flipped[(spec.cam_id, mask)] = run_cam(
                    model, x, spec, classes[spec.cam_id], signs)
    return cams, flipped


# --------------------------------------------------------------------------
# Reference noise: float32 vs float64 forward of the same weights
# --------------------------------------------------------------------------

def relative_difference(a, b, scale=None):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if scale is None:
        scale = np.abs(b).max()
    return float(np.abs(a - b).max() / scale) if scale > 0 else 0.0


def measure_noise(model, x, names, targets, classes, case, acts32, grads32,
                  logits32, cams32, flipped32):
    """Float64 re-run; differences relative to each tensor's max |value|."""
    model64 = without_inplace_relu(model).double()
    x64 = x.double()
    logits64, acts64, grads64 = record_layers(model64, x64, names, targets)
    noise = {
        "logits_rel": relative_difference(logits32, logits64),
        "activations_rel_max": max(
            relative_difference(acts32[n], acts64[n]) for n in names),
        "gradients_rel_max": max(
            relative_difference(grads32[n], grads64[n]) for n in names),
    }
    cam_noise, cam_noise_up_to_sign = {}, {}
    model64 = copy.deepcopy(model).double()
    for spec in case.cams:
        cam64 = run_cam(model64, x64, spec, classes[spec.cam_id])
        ref = cams32[spec.cam_id]
        diff = np.abs(cam64.astype(np.float64) - ref).reshape(len(ref), -1)
        per_image = diff.max(axis=1)
        cam_noise[spec.cam_id] = float(per_image.max())
        if spec.sign_ambiguous:
            # Per image, the best match over all sign patterns.
            for mask in sign_variants(spec):
                alt = flipped32[(spec.cam_id, mask)].astype(np.float64)
                alt_diff = np.abs(cam64 - alt).reshape(len(ref), -1)
                per_image = np.minimum(per_image, alt_diff.max(axis=1))
        cam_noise_up_to_sign[spec.cam_id] = float(per_image.max())
    noise["cam_abs_max"] = max(cam_noise.values())
    noise["cam_abs_max_up_to_sign"] = max(cam_noise_up_to_sign.values())
    noise["cam_abs_per_cam"] = cam_noise
    noise["cam_abs_per_cam_up_to_sign"] = cam_noise_up_to_sign
    return noise


# --------------------------------------------------------------------------
# Perturbation CAMs, aug_smooth, Guided Grad-CAM and metrics (extra keys)
# --------------------------------------------------------------------------
#
# Recorded after everything above, on the same model and input; they add keys
# to expected.safetensors and a few entries to meta.json and change nothing
# that was there before.

@dataclass(frozen=True)
class ExtraCamSpec:
    """One ScoreCAM / AblationCAM call, or one CAM call with aug_smooth=True."""

    method: str
    target_layers: tuple
    targets: str = "class"  # "class" | "softmax" | "none"
    eigen_smooth: bool = False
    aug_smooth: bool = False
    options: tuple = ()  # (("batch_size", 5), ...) for the constructor

    @property
    def cam_id(self):
        suffix = {"class": "", "softmax": "_softmax", "none": "_argmax"}
        name = f"{self.method}_{'+'.join(self.target_layers)}"
        name += suffix[self.targets]
        for key, value in self.options:
            short = {"batch_size": "batch", "ratio_channels_to_ablate": "ratio"}[key]
            name += f"_{short}{value}"
        if self.eigen_smooth:
            name += "_eigensmooth"
        return name

    @property
    def key(self):
        prefix = "augsmooth" if self.aug_smooth else "perturbation"
        return f"{prefix}/{self.cam_id}"

    @property
    def sign_ambiguous(self):
        return self.eigen_smooth


def perturbation_plan(inner_block, full):
    """ScoreCAM and AblationCAM specs; ``full`` for basic and bottleneck."""
    plan = [ExtraCamSpec(m, ("layer4",)) for m in ("ScoreCAM", "AblationCAM")]
    plan += [ExtraCamSpec(m, ("layer3",)) for m in ("ScoreCAM", "AblationCAM")]
    # conv1's output has negative values: the ablation value is min - 1e7,
    # lowered by another 1e7 for each copy of a batch.
    plan += [ExtraCamSpec("AblationCAM", ("conv1",)),
             ExtraCamSpec("AblationCAM", ("conv1",), options=(("batch_size", 5),)),
             ExtraCamSpec("AblationCAM", ("layer4",),
                          options=(("ratio_channels_to_ablate", 0.25),))]
    if full:
        plan += [ExtraCamSpec(m, (inner_block,)) for m in ("ScoreCAM", "AblationCAM")]
        plan += [ExtraCamSpec(m, ("layer3", "layer4")) for m in ("ScoreCAM", "AblationCAM")]
        plan += [
            ExtraCamSpec("ScoreCAM", ("layer4",), targets="none"),
            ExtraCamSpec("ScoreCAM", ("layer3",), targets="softmax"),
            ExtraCamSpec("AblationCAM", ("layer3",), targets="softmax"),
            ExtraCamSpec("ScoreCAM", ("layer4",), eigen_smooth=True),
            ExtraCamSpec("AblationCAM", ("layer4",), eigen_smooth=True),
            ExtraCamSpec("AblationCAM", ("layer3",),
                         options=(("ratio_channels_to_ablate", 0.75),)),
        ]
    return plan


def aug_smooth_plan(inner_block, full):
    """CAM calls with aug_smooth=True (no SVD-based maps: their sign may flip
    between the six augmentations)."""
    plan = [ExtraCamSpec("GradCAM", ("layer4",), aug_smooth=True),
            ExtraCamSpec("ScoreCAM", ("layer4",), aug_smooth=True)]
    if full:
        plan += [
            ExtraCamSpec("GradCAM", ("layer4",), targets="none", aug_smooth=True),
            ExtraCamSpec("GradCAMPlusPlus", ("layer3",), aug_smooth=True),
            ExtraCamSpec("HiResCAM", (inner_block,), aug_smooth=True),
            ExtraCamSpec("LayerCAM", ("layer3", "layer4"), aug_smooth=True),
            ExtraCamSpec("XGradCAM", ("layer4",), targets="softmax", aug_smooth=True),
            ExtraCamSpec("GradCAMElementWise", ("layer3",), aug_smooth=True),
            ExtraCamSpec("AblationCAM", ("layer4",), aug_smooth=True),
        ]
    return plan


@dataclass(frozen=True)
class FullGradSpec:
    """One pytorch-grad-cam FullGrad call (it has no target layers: every
    Conv2d / BatchNorm2d with a bias is used)."""

    targets: str = "class"  # "class" | "softmax" | "none"
    eigen_smooth: bool = False
    aug_smooth: bool = False

    @property
    def cam_id(self):
        suffix = {"class": "", "softmax": "_softmax", "none": "_argmax"}
        name = "FullGrad" + suffix[self.targets]
        if self.eigen_smooth:
            name += "_eigensmooth"
        if self.aug_smooth:
            name += "_augsmooth"
        return name

    @property
    def key(self):
        return f"fullgrad/{self.cam_id}"


def fullgrad_plan(full):
    """FullGrad specs; ``full`` for basic and bottleneck."""
    plan = [FullGradSpec(), FullGradSpec(eigen_smooth=True),
            FullGradSpec(aug_smooth=True)]
    if full:
        plan += [FullGradSpec(targets="none"), FullGradSpec(targets="softmax")]
    return plan


EXTRA_PLANS = {
    "basic": ("layer2.0", True),
    "bottleneck": ("layer3.0", True),
    "grouped": ("layer4.0", False),
    "wide": ("layer3", False),
}


@contextlib.contextmanager
def quiet_tqdm():
    """ScoreCAM and AblationCAM draw tqdm progress bars; silence them."""
    import types

    from pytorch_grad_cam import ablation_cam, score_cam
    silent = types.SimpleNamespace(tqdm=lambda iterable, *args, **kwargs: iterable)
    saved = [(m, m.tqdm) for m in (ablation_cam, score_cam)]
    for module, _ in saved:
        module.tqdm = silent
    try:
        yield
    finally:
        for module, original in saved:
            module.tqdm = original


def extra_method(name):
    from pytorch_grad_cam import AblationCAM, FullGrad, ScoreCAM
    return ({"ScoreCAM": ScoreCAM, "AblationCAM": AblationCAM,
             "FullGrad": FullGrad}.get(name) or METHODS[name])


def run_extra_cam(model, x, spec, classes, signs=None):
    """One pytorch-grad-cam call of an ExtraCamSpec; float32 (N, H, W)."""
    modules = dict(model.named_modules())
    target_layers = [modules[name] for name in spec.target_layers]
    method = extra_method(spec.method)
    guard = (projection_signs(signs) if signs is not None
             else contextlib.nullcontext())
    targets = make_targets(CamSpec(spec.method, spec.target_layers,
                                   targets=spec.targets), classes)
    with quiet_tqdm(), guard, method(model=model, target_layers=target_layers,
                                     **dict(spec.options)) as cam:
        result = cam(input_tensor=x, targets=targets, aug_smooth=spec.aug_smooth,
                     eigen_smooth=spec.eigen_smooth)
    assert result.dtype == np.float32
    assert result.shape == (x.shape[0],) + tuple(x.shape[2:])
    return result


def record_extra_cams(model, x, case, chosen):
    """Perturbation and aug_smooth CAMs, their sign variants and float64 noise."""
    inner, full = EXTRA_PLANS[case.name]
    specs = perturbation_plan(inner, full) + aug_smooth_plan(inner, full)
    model64 = copy.deepcopy(model).double()
    x64 = x.double()
    tensors, entries = {}, []
    for spec in specs:
        classes = None if spec.targets == "none" else chosen
        cam = run_extra_cam(model, x, spec, classes)
        tensors[spec.key] = cam
        per_image = np.abs(run_extra_cam(model64, x64, spec, classes).astype(np.float64)
                           - cam).reshape(len(cam), -1).max(axis=1)
        entry = {
            "key": spec.key,
            "method": spec.method,
            "target_layers": list(spec.target_layers),
            "targets": {"kind": spec.targets, "classes": classes},
            "eigen_smooth": spec.eigen_smooth,
            "aug_smooth": spec.aug_smooth,
            "options": dict(spec.options),
            "all_zero_images": all_zero_images(cam),
        }
        if spec.sign_ambiguous:
            entry["sign_variants"] = {}
            for mask, signs in sign_variants(spec).items():
                flipped_key = f"{spec.key.replace('/', '_signflip/', 1)}/{mask}"
                flipped = run_extra_cam(model, x, spec, classes, signs)
                tensors[flipped_key] = flipped
                entry["sign_variants"][mask] = flipped_key
                flipped64 = run_extra_cam(model64, x64, spec, classes, signs)
                per_image = np.minimum(per_image, np.abs(
                    flipped64.astype(np.float64) - cam).reshape(len(cam), -1).max(axis=1))
        entry["float64_vs_float32"] = float(per_image.max())
        entries.append(entry)
    return tensors, entries


def run_fullgrad(model, x, spec, classes, sign=1):
    """One pytorch-grad-cam FullGrad call (no target layers); float32
    (N, H, W). ``sign`` -1 negates its (single) eigen_smooth projection."""
    extra = ExtraCamSpec("FullGrad", (), targets=spec.targets,
                         eigen_smooth=spec.eigen_smooth,
                         aug_smooth=spec.aug_smooth)
    return run_extra_cam(model, x, extra, classes,
                         [sign] if sign < 0 else None)


def record_fullgrad(model, x, case, chosen):
    """FullGrad maps, the eigen_smooth sign variant and float64 noise."""
    _, full = EXTRA_PLANS[case.name]
    model64 = copy.deepcopy(model).double()
    x64 = x.double()
    tensors, entries = {}, []
    for spec in fullgrad_plan(full):
        classes = None if spec.targets == "none" else chosen
        cam = run_fullgrad(model, x, spec, classes)
        tensors[spec.key] = cam
        per_image = np.abs(run_fullgrad(model64, x64, spec, classes)
                           .astype(np.float64) - cam
                           ).reshape(len(cam), -1).max(axis=1)
        entry = {
            "key": spec.key,
            "method": "FullGrad",
            "targets": {"kind": spec.targets, "classes": classes},
            "eigen_smooth": spec.eigen_smooth,
            "aug_smooth": spec.aug_smooth,
            "all_zero_images": all_zero_images(cam),
        }
        if spec.eigen_smooth:
            flipped_key = f"fullgrad_signflip/{spec.cam_id}/1"
            tensors[flipped_key] = run_fullgrad(model, x, spec, classes, -1)
            entry["sign_variants"] = {"1": flipped_key}
            flipped64 = run_fullgrad(model64, x64, spec, classes, -1)
            per_image = np.minimum(per_image, np.abs(
                flipped64.astype(np.float64) - cam).reshape(len(cam), -1)
                .max(axis=1))
        entry["float64_vs_float32"] = float(per_image.max())
        entries.append(entry)
    return tensors, entries


def record_guided_gradcam(model, x, cams, guided):
    """The reference's Guided Grad-CAM recipe (its cam.py example) on the
    layer4 GradCAM and the guided gradients of the same classes."""
    from pytorch_grad_cam.utils.image import deprocess_image

    cam = cams["GradCAM_layer4"]
    gb = guided.permute(0, 2, 3, 1).numpy()  # (N, H, W, 3), as the reference returns it
    tensors = {}
    products, deprocessed = [], []
    for n in range(len(cam)):
        cam_mask = cv2.merge([cam[n], cam[n], cam[n]])
        product = cam_mask * gb[n]
        products.append(product)
        deprocessed.append(np.float32(deprocess_image(product)))
    tensors["guided_gradcam/GradCAM_layer4"] = np.stack(products).astype(np.float32)
    tensors["guided_gradcam_deprocessed/GradCAM_layer4"] = np.stack(deprocessed)
    return tensors


@contextlib.contextmanager
def noiseless_road():
    """pytorch-grad-cam's ROAD metrics with NoisyLinearImputer(noise=0)."""
    from pytorch_grad_cam.metrics import road
    original = road.NoisyLinearImputer

    class Noiseless(original):
        def __init__(self, noise=0.01, weighting=road.neighbors_weights):
            super().__init__(noise=0.0, weighting=weighting)

    road.NoisyLinearImputer = Noiseless
    try:
        yield
    finally:
        road.NoisyLinearImputer = original


#: (key part, class name, constructor arguments) of the metrics recorded.
METRIC_PLAN = (
    ("CamMultImageConfidenceChange", "CamMultImageConfidenceChange", {}),
    ("DropInConfidence", "DropInConfidence", {}),
    ("IncreaseInConfidence", "IncreaseInConfidence", {}),
    ("ROADMostRelevantFirst_80", "ROADMostRelevantFirst", {"percentile": 80}),
    ("ROADLeastRelevantFirst_20", "ROADLeastRelevantFirst", {"percentile": 20}),
    ("ROADMostRelevantFirst_auto", "ROADMostRelevantFirst", {"percentile": "auto"}),
    ("ROADLeastRelevantFirst_auto", "ROADLeastRelevantFirst", {"percentile": "auto"}),
    ("ROADMostRelevantFirstAverage", "ROADMostRelevantFirstAverage", {}),
    ("ROADLeastRelevantFirstAverage", "ROADLeastRelevantFirstAverage", {}),
    ("ROADCombined", "ROADCombined", {}),
)

#: (key part, rule, percentile, keep the imputed image) of the ROAD masks
#: recorded (the imputed images only where flagged, to save space).
ROAD_IMPUTATIONS = (
    ("MoRF_80", "most", 80, True),
    ("MoRF_10", "most", 10, True),
    ("LeRF_auto", "least", "auto", False),
)


def metric_class(name):
    from pytorch_grad_cam.metrics import cam_mult_image, road
    return getattr(cam_mult_image, name, None) or getattr(road, name)


def rise_gkern(klen, nsig):
    """RISE's gkern (evaluation.py)."""
    from scipy.ndimage import gaussian_filter
    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    k = gaussian_filter(inp, nsig)
    kern = np.zeros((3, 3, klen, klen))
    for c in range(3):
        kern[c, c] = k
    return torch.from_numpy(kern.astype("float32"))


def rise_single_run(model, img_tensor, explanation, mode, step, substrate_fn):
    """RISE's CausalMetric.single_run (evaluation.py) for any image size, on
    the CPU, without plotting; ``model`` ends with a softmax."""
    hw = img_tensor.shape[2] * img_tensor.shape[3]
    pred = model(img_tensor)
    _, c = torch.max(pred, 1)
    c = c.numpy()[0]
    n_steps = (hw + step - 1) // step
    if mode == "del":
        start = img_tensor.clone()
        finish = substrate_fn(img_tensor)
    else:
        start = substrate_fn(img_tensor)
        finish = img_tensor.clone()
    scores = np.empty(n_steps + 1)
    salient_order = np.flip(np.argsort(explanation.reshape(-1, hw), axis=1), axis=-1)
    for i in range(n_steps + 1):
        pred = model(start)
        scores[i] = pred[0, c]
        if i < n_steps:
            coords = salient_order[:, step * i:step * (i + 1)]
            start.numpy().reshape(1, 3, hw)[0, :, coords] = \
                finish.numpy().reshape(1, 3, hw)[0, :, coords]
    return scores


def rise_auc(arr):
    return (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (arr.shape[0] - 1)


def record_metrics(model, x, case, chosen, lowest, cams):
    """Metric values of the reference (ROAD with noise 0), ROAD masks and
    imputed images, and RISE's deletion / insertion curves."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    softmax_targets = [ClassifierOutputSoftmaxTarget(c) for c in chosen]
    tensors = {}
    cam_ids = ["GradCAM_layer4"]
    if "GradCAM_layer4_lowestclass" in cams:
        cam_ids.append("GradCAM_layer4_lowestclass")
    with noiseless_road():
        for cam_id in cam_ids:
            for key, name, kwargs in METRIC_PLAN:
                metric = metric_class(name)(**kwargs)
                with torch.no_grad():
                    value = metric(x, cams[cam_id], softmax_targets, model)
                tensors[f"metric/{key}/{cam_id}"] = np.float32(value).reshape(len(x))
        # The class-logit targets of the CAM itself, for the simplest metric.
        metric = metric_class("CamMultImageConfidenceChange")()
        with torch.no_grad():
            value = metric(x, cams["GradCAM_layer4"],
                           [ClassifierOutputTarget(c) for c in chosen], model)
        tensors["metric/CamMultImageConfidenceChange_logit/GradCAM_layer4"] = np.float32(value)

    imputer = NoisyLinearImputer(noise=0.0)
    cam = cams["GradCAM_layer4"]
    for key, rule, percentile, keep_image in ROAD_IMPUTATIONS:
        remover = (RemoveMostRelevantFirst if rule == "most"
                   else RemoveLeastRelevantFirst)(percentile, imputer)
        masks, imputed = [], []
        for n in range(len(x)):
            recorded = {}

            def capture(img, mask, recorded=recorded):
                recorded["mask"] = np.float32(mask.numpy())
                return imputer(img, mask)

            remover.imputer = capture
            imputed.append(remover(x[n], torch.from_numpy(cam[n])).numpy())
            masks.append(recorded["mask"])
        tensors[f"road_mask/{key}/GradCAM_layer4"] = np.stack(masks).astype(np.float32)
        if keep_image:
            tensors[f"road_imputed/{key}/GradCAM_layer4"] = np.stack(imputed).astype(
                np.float32)

    # RISE (deletion: zeros; insertion: 11x11 blur, sigma 5), probabilities.
    probabilities = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()
    kern = rise_gkern(11, 5)

    def blur(t):
        return torch.nn.functional.conv2d(t, kern, padding=11 // 2)

    height, width = x.shape[2:]
    step = max(1, -(-(height * width) // 224))
    for mode, name, substrate in (("del", "Deletion", torch.zeros_like),
                                  ("ins", "Insertion", blur)):
        curves = []
        with torch.no_grad():
            for n in range(len(x)):
                curves.append(rise_single_run(probabilities, x[n:n + 1].clone(), cam[n],
                                              mode, step, substrate))
        curves = np.stack(curves)
        tensors[f"metric/{name}/GradCAM_layer4"] = np.float32(
            [rise_auc(c) for c in curves])
        tensors[f"metric_curve/{name}/GradCAM_layer4"] = np.float32(curves)
    meta = {
        "targets": {"kind": "softmax", "classes": chosen},
        "cams": [f"cam/{c}" for c in cam_ids],
        "road_noise": 0.0,
        "rise_step": step,
        "rise_classes": [int(c) for c in
                         probabilities(x).argmax(dim=1).tolist()],
    }
    return tensors, meta


def record_extras(model, x, case, chosen, lowest, cams, input_gradients):
    """All extra keys (float32 torch tensors) and their meta.json entries."""
    cam_tensors, cam_entries = record_extra_cams(model, x, case, chosen)
    tensors = dict(cam_tensors)
    tensors.update(record_guided_gradcam(model, x, cams, input_gradients[1]))
    metric_tensors, metric_meta = record_metrics(model, x, case, chosen, lowest, cams)
    tensors.update(metric_tensors)
    fullgrad_tensors, fullgrad_entries = record_fullgrad(model, x, case,
                                                         chosen)
    tensors.update(fullgrad_tensors)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
               for k, v in tensors.items()}
    meta = {"extra_cams": cam_entries, "metrics": metric_meta,
            "fullgrad_cams": fullgrad_entries}
    return tensors, meta


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------

def record_input_gradients(model, x, targets):
    """d(score)/d(input) for score = sum_n logits[n, targets[n]], true and guided.

    The guided one is pytorch-grad-cam's GuidedBackpropReLUModel, which explains one image at a
    time and returns (H, W, C); it is run per image and stacked back to (N, C, H, W).
    """
    from pytorch_grad_cam import GuidedBackpropReLUModel

    plain = without_inplace_relu(model)
    inputs = x.clone().requires_grad_(True)
    logits = plain(inputs)
    logits[torch.arange(len(targets)), torch.tensor(targets)].sum().backward()
    guided_model = GuidedBackpropReLUModel(copy.deepcopy(model), device="cpu")
    guided = [torch.from_numpy(guided_model(x[n:n + 1].clone(), target_category=int(c)))
              .permute(2, 0, 1) for n, c in enumerate(targets)]
    return inputs.grad.detach().clone(), torch.stack(guided).contiguous()


def contiguous(tensors):
    return {k: v.detach().contiguous() for k, v in tensors.items()}


def write_case(out_dir, case, model, x, names, logits, acts, grads, targets,
               classes, cams, flipped, noise, input_gradients, extras=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(contiguous(model.state_dict()),
              str(out_dir / "weights.safetensors"))

    expected = {"input": x, "logits": logits}
    for name in names:
        expected[f"activation/{name}"] = acts[name]
        expected[f"gradient/{name}"] = grads[name]
    expected["gradient/input"], expected["guided/input"] = input_gradients
    for cam_id, cam in cams.items():
        expected[f"cam/{cam_id}"] = torch.from_numpy(cam)
    for (cam_id, mask), cam in flipped.items():
        expected[f"cam_signflip/{cam_id}/{mask}"] = torch.from_numpy(cam)
    if extras is not None:
        assert not set(extras[0]) & set(expected)
        expected.update(extras[0])
    for key, value in expected.items():
        assert value.dtype == torch.float32, key
    save_file(contiguous(expected), str(out_dir / "expected.safetensors"))

    cam_entries = []
    for spec in case.cams:
        entry = {
            "key": f"cam/{spec.cam_id}",
            "method": spec.method,
            "target_layers": list(spec.target_layers),
            "targets": {
                "kind": spec.targets,
                "classes": classes[spec.cam_id],
            },
            "eigen_smooth": spec.eigen_smooth,
            "all_zero_images": all_zero_images(cams[spec.cam_id]),
        }
        if spec.sign_ambiguous:
            entry["sign_variants"] = {
                mask: f"cam_signflip/{spec.cam_id}/{mask}"
                for mask in sign_variants(spec)}
        cam_entries.append(entry)

    meta = {
        "case": case.name,
        "block": case.block,
        "layers": list(case.layers),
        "groups": case.groups,
        "width_per_group": case.width_per_group,
        "width_divisor": case.divisor,
        "num_classes": case.num_classes,
        "input_shape": list(case.input_shape),
        "layer_names": names,
        "gradient_targets": targets,
        "cams": cam_entries,
        "versions": versions(),
        "max_abs_logit": float(logits.abs().max()),
        "float64_vs_float32": {
            k: noise[k] for k in ("logits_rel", "activations_rel_max",
                                  "gradients_rel_max", "cam_abs_max",
                                  "cam_abs_max_up_to_sign")},
    }
    if extras is not None:
        meta.update(extras[1])
    with open(out_dir / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def all_zero_images(cam):
    """Indices of the images whose CAM is identically zero."""
    return [i for i in range(len(cam)) if not np.any(cam[i])]


def versions():
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "grad_cam": metadata.version("grad-cam"),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def generate_case(case, output_dir):
    model, x = build_case(case)
    names = layer_names(model)
    with torch.no_grad():
        logits = model(x)
    mass = class_mass(model, logits)
    targets = choose_targets(mass, case.seed)
    lowest = lowest_classes(mass)
    classes = {spec.cam_id: spec_classes(spec, targets, lowest)
               for spec in case.cams}

    recorder = without_inplace_relu(model)
    logits, acts, grads = record_layers(recorder, x, names, targets)
    sanity_check(model, x, logits, acts, grads, targets, names)
    check_scale(case, names, acts, logits)

    # The CAMs run on the model as torchvision builds it (in-place ReLUs).
    cams, flipped = run_all_cams(model, x, case, classes)
    noise = measure_noise(model, x, names, targets, classes, case, acts,
                          grads, logits, cams, flipped)
    input_gradients = record_input_gradients(model, x, targets)
    extras = record_extras(model, x, case, targets, lowest, cams,
                           input_gradients)
    write_case(output_dir / case.name, case, model, x, names, logits, acts,
               grads, targets, classes, cams, flipped, noise, input_gradients,
               extras)
    report(case, logits, targets, noise, cams, len(flipped))


def check_scale(case, names, acts, logits):
    """Activations must neither vanish nor explode; logits stay moderate."""
    for name in names:
        std = float(acts[name].std())
        if not 0.05 < std < 20.0:
            raise AssertionError(f"{case.name}/{name}: activation std {std}")
    max_logit = float(logits.abs().max())
    if not 0.1 < max_logit < 100.0:
        raise AssertionError(f"{case.name}: max |logit| {max_logit}")


def report(case, logits, targets, noise, cams, n_flipped):
    print(f"{case.name}: {len(cams)} CAMs (+{n_flipped} sign variants), "
          f"max |logit| = {float(logits.abs().max()):.4f}, targets {targets}"
          f", argmax {logits.argmax(dim=1).tolist()}")
    print(f"  float64 vs float32: logits {noise['logits_rel']:.2e} "
          f"(rel. to max |logit|), activations "
          f"{noise['activations_rel_max']:.2e}, gradients "
          f"{noise['gradients_rel_max']:.2e} (rel. to each layer's "
          f"max |value|)")
    print(f"  CAM max abs diff {noise['cam_abs_max']:.2e} "
          f"(up to SVD sign {noise['cam_abs_max_up_to_sign']:.2e})")
    worst = sorted(noise["cam_abs_per_cam_up_to_sign"].items(),
                   key=lambda item: -item[1])[:3]
    print("  worst CAMs: " + ", ".join(f"{k} {v:.2e}" for k, v in worst))
    zero = {k: all_zero_images(v) for k, v in cams.items()}
    zero = {k: v for k, v in zero.items() if v}
    print(f"  all-zero images: {zero}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT,
                        help="where to write <case>/ (default: %(default)s)")
    parser.add_argument("--case", action="append", choices=[
        c.name for c in CASES], help="only this case (repeatable)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.use_deterministic_algorithms(True)
    for case in CASES:
        if args.case is None or case.name in args.case:
            generate_case(case, args.output_dir)


if __name__ == "__main__":
    main()
