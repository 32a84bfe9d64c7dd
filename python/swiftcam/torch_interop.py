"""A swiftcam model from a live torch ResNet, with the network's modules usable as layers.

    net = torchvision.models.resnet50(weights="IMAGENET1K_V2").eval()
    model = swiftcam.from_torch(net)
    cam = swiftcam.GradCAM(model=model, target_layers=[net.layer4[-1]])   # as pytorch-grad-cam

:func:`from_torch` reads the module's weights once (``module.state_dict()``; CPU float32 tensors
are viewed through ``tensor.detach().cpu().numpy()`` without a copy, and the engine keeps its own
copy) and remembers the module tree (``module.named_modules()``) as a map from ``id(submodule)``
to its dotted name. Wherever the model takes layer names (``target_layers`` of the CAM classes,
``layers`` of :meth:`~swiftcam.Model.activations` and :meth:`~swiftcam.Model.gradients`), the
returned :class:`TorchModel` also takes those submodules: ``net.layer4[-1]`` is ``"layer4.1"``
for a resnet18, ``net.layer4`` is ``"layer4"``, ``net.conv1`` is ``"conv1"``.

torch is never imported here: the module is duck-typed. The map holds weak references, so it
neither keeps the torch network alive nor confuses a new object that reuses a dead module's id.
The weights are copied at conversion: later changes to the torch module are not seen. swiftcam
always computes like ``net.eval()`` (batch norm with the running statistics).

DataParallel / DistributedDataParallel (``module.``) and ``torch.compile`` (``_orig_mod.``)
wrappers are unwrapped: their prefixes are stripped from weight and module names alike.
"""

import weakref

import numpy as np

from .errors import InvalidInputError, UnknownLayerError
from .model import Model, load
from .pth import WRAPPER_PREFIXES

__all__ = ["from_torch", "TorchModel", "resolve_layer"]


class TorchModel(Model):
    """A :class:`~swiftcam.Model` made by :func:`from_torch`: layers can also be given as
    modules of the torch network it came from. Everything else is the same as Model."""

    # Set by from_torch (a TorchModel is a Model whose class was switched after loading).
    _torch_modules = None  # id(submodule) -> (dotted name, weak reference or the module)
    _torch_root = None  # weak reference to the network, or None
    _torch_class = "Module"

    @property
    def torch_module(self):
        """The torch network this model was made from, or None once it was garbage-collected."""
        return _dereference(self._torch_root)

    def layer_name_for(self, module):
        """The swiftcam layer name of a submodule of the torch network, e.g. ``"layer4.1"``.

        Raises
        ------
        UnknownLayerError
            ``module`` is not part of the network, or is a module swiftcam cannot target
            (``fc``, a convolution inside a block, the network itself).
        """
        return self._resolve(module, "layer")

    def _layer_name(self, obj):
        """The dotted name of ``obj`` in the torch network (``""`` for the network itself), or
        None when ``obj`` is not one of its modules. The hook the CAM classes may use."""
        entry = self._torch_modules.get(id(obj)) if self._torch_modules else None
        if entry is None:
            return None
        name, reference = entry
        return name if _dereference(reference) is obj else None

    def _resolve(self, layer, argument):
        """A str / int is returned unchanged; a module of the network becomes its layer name."""
        if isinstance(layer, (str, int, np.integer)):
            return layer
        name = self._layer_name(layer)
        if name is None:
            if _is_module(layer):
                raise UnknownLayerError(
                    f"{argument}: this {type(layer).__name__} is not a module of the "
                    f"{self._torch_class} given to swiftcam.from_torch (was the model made "
                    "from another network?)")
            return layer  # Model._layer_indices raises its TypeError
        if name not in self.layer_names:
            what = "the network itself" if name == "" else f"module {name!r}"
            raise UnknownLayerError(
                f"{argument}: {what} ({type(layer).__name__}) cannot be targeted; swiftcam's "
                f"layers are: {', '.join(self.layer_names)} (pass one of those modules, e.g. "
                "net.layer4[-1], or its name)")
        return name

    def _layer_indices(self, layers, name, unique=False):
        if layers is not None and not isinstance(layers, (str, int, np.integer)):
            if _is_module(layers) or self._layer_name(layers) is not None:
                layers = [layers]  # one module (an nn.Sequential is iterable: not its blocks)
            else:
                try:
                    layers = list(layers)
                except TypeError:
                    layers = [layers]
            layers = [self._resolve(layer, name) for layer in layers]
        return super()._layer_indices(layers, name, unique)

    def __repr__(self):
        text = super().__repr__()
        return f"{text[:-1]}, from torch {self._torch_class}>"


def _dereference(reference):
    if isinstance(reference, weakref.ref):
        return reference()
    return reference


def _is_module(obj):
    return callable(getattr(obj, "named_modules", None))


def _reference(obj):
    try:
        return weakref.ref(obj)
    except TypeError:
        return obj


def _wrapper_prefixes(keys):
    """The wrapper prefixes every key starts with, outermost first."""
    keys = list(keys)
    found = []
    changed = True
    while keys and changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in keys):
                found.append(prefix)
                keys = [k[len(prefix):] for k in keys]
                changed = True
    return found


def _strip(name, prefixes):
    """A module's name without the wrapper prefixes; the wrappers themselves become ""."""
    for prefix in prefixes:
        if name == prefix[:-1] or name == "":
            name = ""
        elif name.startswith(prefix):
            name = name[len(prefix):]
        else:
            return None  # a module beside the wrapped network: not part of it
    return name


def _to_numpy(value, key):
    """A tensor's values as an ndarray; CPU float32 (and float16/float64) tensors share memory."""
    if isinstance(value, np.ndarray):
        return value
    if not callable(getattr(value, "detach", None)):
        return np.asarray(value)
    try:
        tensor = value.detach()
        if callable(getattr(tensor, "cpu", None)):
            tensor = tensor.cpu()
        for resolve in ("resolve_conj", "resolve_neg"):  # no-ops unless a lazy bit is set
            if callable(getattr(tensor, resolve, None)):
                tensor = getattr(tensor, resolve)()
        if str(getattr(tensor, "dtype", "")) == "torch.bfloat16":
            tensor = tensor.float()  # NumPy has no bfloat16
        return tensor.numpy()
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as error:
        raise InvalidInputError(f"{key}: cannot read the tensor's values ({error})") from None


def from_torch(module):
    """Load a torch ResNet module into swiftcam, keeping its module tree for layer look-ups.

    Parameters
    ----------
    module : torch.nn.Module
        A torchvision ResNet (or a module with its state-dict layout: resnet18 ... 152,
        resnext, wide_resnet, any width), possibly wrapped in DataParallel /
        DistributedDataParallel or torch.compile. On any device, in any float dtype.

    Returns
    -------
    TorchModel
        A :class:`~swiftcam.Model` whose layer arguments also take the network's modules
        (``target_layers=[net.layer4[-1]]``); see :meth:`TorchModel.layer_name_for`.

    Raises
    ------
    TypeError
        ``module`` has no ``state_dict()`` / ``named_modules()`` (it is not a torch module).
    WeightsError, UnsupportedModelError
        As :func:`swiftcam.load`: the weights do not describe a supported ResNet.
    """
    if not (callable(getattr(module, "state_dict", None)) and _is_module(module)):
        raise TypeError(f"from_torch expects a torch.nn.Module (a torchvision ResNet), got "
                        f"{type(module).__name__}; for a state dict or a file use swiftcam.load")
    state = module.state_dict()
    prefixes = _wrapper_prefixes(k for k in state if isinstance(k, str))
    weights = {}
    for key, value in state.items():
        if not isinstance(key, str):
            weights[key] = value  # load() reports it
            continue
        stripped = key
        for prefix in prefixes:
            stripped = stripped[len(prefix):]
        weights[stripped] = _to_numpy(value, key)

    modules = {}
    for name, submodule in module.named_modules():
        stripped = _strip(name, prefixes)
        if stripped is None:
            continue
        # named_modules() lists each module once; a wrapper and the network it wraps are both
        # "" (the network itself).
        modules[id(submodule)] = (stripped, _reference(submodule))

    model = load(weights)
    model.__class__ = TorchModel
    model._torch_modules = modules
    model._torch_root = _reference(module)
    model._torch_class = type(module).__name__
    return model


def resolve_layer(model, layer):
    """The layer name ``layer`` designates in ``model``.

    ``layer`` is a name from ``model.layer_names``, an index into it, or, for a model made by
    :func:`from_torch`, a module of its torch network. Raises UnknownLayerError (unknown name,
    module not targetable or not in the network) or TypeError.
    """
    if isinstance(model, TorchModel):
        layer = model._resolve(layer, "layer")
    elif _is_module(layer):
        raise TypeError("layers given as torch modules need a model made with "
                        "swiftcam.from_torch(net); this model takes layer names such as "
                        "'layer4' (see model.layer_names)")
    (index,) = model._layer_indices([layer], "layer")
    return model.layer_names[index]
