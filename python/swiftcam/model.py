"""The Model type and :func:`load`: a torchvision ResNet evaluated by the Swift engine.

A model is immutable once loaded and may be called from several threads at once (the GIL is
released while the engine computes). :meth:`Model.close` frees the engine's memory; it never
frees memory under a running call: the model is marked closed at once (later calls raise
:class:`~swiftcam.errors.ModelClosedError`) and the memory is freed as soon as the last running
call has returned (deferred close).
"""

import errno
import json
import operator
import os
import stat
from collections.abc import Mapping

import numpy as np

from . import _native
from . import _safetensors
from . import pth as _pth
from ._arrays import as_float32, as_input_batch, to_numpy
from ._seeds import seeds_for_targets
from .errors import (FileFormatError, InputShapeError, InvalidInputError,
                     ModelFileNotFoundError, OutOfMemoryError, SwiftCAMIOError,
                     UnknownLayerError, WeightsError)

__all__ = ["Model", "load"]

_INT64_MAX = 2**63 - 1

# Suffixes of files written by torch.save, read without torch by swiftcam.pth.
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

# Suffixes of formats swiftcam does not read, with what to do instead.
_OTHER_FORMATS = {
    ".pkl": "a pickle",
    ".onnx": "an ONNX model",
    ".npz": "a NumPy archive",
    ".npy": "a NumPy array",
    ".h5": "an HDF5 file",
}


def _with_prefix(error, prefix):
    """A copy of a swiftcam error with ``prefix`` in front of its message."""
    copy = type(error)(f"{prefix}: {error}")
    copy.status = error.status
    return copy


class Model:
    """A ResNet loaded into the swiftcam engine. Create one with :func:`swiftcam.load`.

    Calling the model runs the forward pass: ``logits = model(x)`` with ``x`` of shape
    (N, C, H, W). Use it as a context manager, or call :meth:`close`, to free its memory early.

    Attributes
    ----------
    arch : str
        Architecture name, e.g. ``"resnet50"`` (``"resnet"`` for a layout torchvision does not
        name).
    num_classes : int
    input_channels : int
    layer_names : tuple of str
        Layers that can be inspected or targeted, in forward order, named like torchvision's
        modules (``"conv1"``, ..., ``"layer4"``, ``"layer4.2"``, ``"avgpool"``). A stage and its
        last block are the same tensor.
    config : dict
        The inferred configuration (block type, blocks per stage, widths, groups, ...).
    labels : tuple of str or None
        Class names: given to :func:`load`, or the ImageNet-1k names shipped with swiftcam
        when the model has 1000 classes, else None.
    """

    def __init__(self, handle, source=None):
        if not isinstance(handle, _native.Model):
            raise TypeError("Model objects are created with swiftcam.load(...)")
        self._handle = handle
        self._source = source
        self._arch = handle.architecture
        self._num_classes = handle.num_classes
        self._input_channels = handle.input_channels
        self._layer_names = tuple(handle.layer_names)
        self._layer_index = {name: i for i, name in enumerate(self._layer_names)}
        self._description = handle.description
        self._config = None
        self._labels = None
        # What save() writes: a path to re-read, or the name -> float32 array mapping in memory.
        self._weights = source

    # -- properties ---------------------------------------------------------------------------

    @property
    def arch(self):
        """Architecture name, e.g. ``"resnet50"``."""
        return self._arch

    @property
    def num_classes(self):
        """Number of output classes."""
        return self._num_classes

    @property
    def input_channels(self):
        """Channels the model expects in its input."""
        return self._input_channels

    @property
    def layer_names(self):
        """Names of the layers that can be inspected or targeted, in forward order."""
        return self._layer_names

    @property
    def config(self):
        """The inferred configuration, a dict parsed from the engine's JSON description."""
        if self._config is None:
            self._config = json.loads(self._description) if self._description else {}
        return dict(self._config)

    @property
    def labels(self):
        """Class names, a tuple of ``num_classes`` str, or None when unknown."""
        return self._labels

    @labels.setter
    def labels(self, labels):
        self._labels = _checked_labels(labels, self._num_classes)

    @property
    def closed(self):
        """True once :meth:`close` was called."""
        return self._handle.closed

    # -- computing ----------------------------------------------------------------------------

    def __call__(self, x):
        """Run the forward pass.

        Parameters
        ----------
        x : array_like, shape (N, C, H, W)
            A float32 C-contiguous ndarray is read in place (no copy); anything else is
            converted once to float32. Torch tensors are accepted.

        Returns
        -------
        numpy.ndarray, float32, shape (N, num_classes)
            The logits.
        """
        batch = self._input(x, "x")
        logits = np.empty((batch.shape[0], self._num_classes), dtype=np.float32)
        try:
            self._handle.forward(batch, logits)
        except InputShapeError as error:
            raise _with_prefix(error, f"x of shape {batch.shape}") from None
        return logits

    forward = __call__

    def activations(self, x, layers=None):
        """Run the forward pass and return the output of some layers.

        Parameters
        ----------
        x : array_like, shape (N, C, H, W)
        layers : str, int or sequence of them, optional
            Layer names (from :attr:`layer_names`) or indices; all layers when None.

        Returns
        -------
        dict of str to numpy.ndarray
            Each layer's output (N, C_i, h_i, w_i), float32, in forward order of the request.
        """
        indices = self._layer_indices(layers, "layers", unique=True)
        batch = self._input(x, "x")
        trace = self._trace(batch, indices, "x")
        try:
            result = {}
            for position, index in enumerate(indices):
                output = np.empty(self.layer_shape(index, batch.shape), dtype=np.float32)
                trace.activation(position, output)
                result[self._layer_names[index]] = output
            return result
        finally:
            trace.close()

    def gradients(self, x, targets=None, layers=None):
        """Gradients of each image's target score with respect to some layers' outputs.

        Parameters
        ----------
        x : array_like, shape (N, C, H, W)
        targets : list, optional
            One target per image: a class index or a target object such as
            ``ClassifierOutputTarget(c)``; None takes each image's highest logit.
        layers : str, int or sequence of them, optional
            Layer names or indices; all layers when None.

        Returns
        -------
        dict of str to numpy.ndarray
            d(score_n)/d(layer output) for each layer, (N, C_i, h_i, w_i), float32.
        """
        indices = self._layer_indices(layers, "layers", unique=True)
        batch = self._input(x, "x")
        trace = self._trace(batch, indices, "x")
        try:
            logits = np.empty((batch.shape[0], self._num_classes), dtype=np.float32)
            trace.logits(logits)
            seeds = seeds_for_targets(targets, logits)
            outputs = [np.empty(self.layer_shape(i, batch.shape), dtype=np.float32)
                       for i in indices]
            trace.backward(seeds.seeds, 1, outputs)
        finally:
            trace.close()
        return {self._layer_names[i]: g for i, g in zip(indices, outputs)}

    def update_weights(self, source):
        """Replace the weights in place, e.g. once per epoch of a training loop.

        Parameters
        ----------
        source : Mapping, str, os.PathLike or torch.nn.Module
            Weights of the same architecture (same layout, classes and input channels) in any
            form :func:`load` accepts. Calls already running finish with the old weights.

        Raises
        ------
        WeightsError
            A tensor is missing, unexpected or mis-shaped, or the weights describe another
            architecture.
        """
        if isinstance(source, (str, bytes, os.PathLike)):
            path = os.fsdecode(os.fspath(source))
            items = _float32_items(_read_state_dict_file(path))
            weights = path
        else:
            if not isinstance(source, Mapping) and callable(getattr(source, "state_dict", None)):
                source = source.state_dict()
            items = _float32_items(source)
            weights = dict(items)
        self._handle.update_tensors(items)
        self._weights = weights

    def save(self, path):
        """Write the weights as a ``.safetensors`` file with torchvision's key names.

        Writes the tensors the model was loaded (or last updated) with, batch-norm statistics
        included. For weights given as in-memory arrays, swiftcam keeps references to them, not
        copies: arrays modified in place since are written as they are now.
        """
        weights = self._weights
        if weights is None:
            raise InvalidInputError("save(): this model keeps no copy of its weights")
        if isinstance(weights, str):
            weights = dict(_float32_items(_read_state_dict_file(weights)))
        _safetensors.write(path, weights, metadata={"format": "pt", "writer": "swiftcam"})

    def layer_shape(self, layer, input_shape):
        """The (N, C, h, w) shape of ``layer`` (a name or index) for an input of shape
        ``input_shape`` = (N, C, H, W)."""
        (index,) = self._layer_indices(layer, "layer")
        shape = tuple(operator.index(d) for d in input_shape)
        if len(shape) != 4:
            raise InputShapeError(f"input_shape: expected (N, C, H, W), got {shape}")
        if min(shape) < 0:
            raise InputShapeError(f"input_shape: sizes must not be negative, got {shape}")
        if max(shape) > _INT64_MAX:
            raise OutOfMemoryError(f"input_shape {shape} is too large (a size exceeds 2**63 - 1)")
        return self._handle.layer_shape(index, shape)

    # -- lifetime -----------------------------------------------------------------------------

    def close(self):
        """Free the engine's memory. Further calls raise ModelClosedError.

        Closing while another thread computes with the model (or a trace is alive) is safe: the
        memory is freed when the last running call returns.
        """
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def __repr__(self):
        state = " (closed)" if self.closed else ""
        parts = [f"{self._num_classes} classes"]
        config = self.config if self._description else {}
        if "block" in config and "layers" in config:
            parts.append(f"{config['block']} blocks {list(config['layers'])}")
        if config.get("groups", 1) not in (1, None):
            parts.append(f"groups={config['groups']}")
        if self._source is not None:
            parts.append(f"from {self._source!r}")
        return f"<swiftcam.Model {self._arch}{state}: {', '.join(parts)}>"

    # -- for tests and the CAM classes --------------------------------------------------------

    def _last_input_address(self):
        """The address the engine read the most recent input from (zero-copy tests)."""
        return self._handle.last_input_address()

    def _input(self, x, name):
        return as_input_batch(x, self._input_channels, name)

    def _trace(self, batch, indices, name):
        try:
            return self._handle.trace(batch, indices)
        except InputShapeError as error:
            raise _with_prefix(error, f"{name} of shape {batch.shape}") from None

    def _layer_indices(self, layers, name, unique=False):
        """Resolve layer names or indices to indices; all layers when ``layers`` is None.

        With ``unique``, repeated layers are dropped (first occurrence kept).
        """
        if layers is None:
            return list(range(len(self._layer_names)))
        if isinstance(layers, (str, int, np.integer)):
            layers = [layers]
        indices = []
        for layer in layers:
            if isinstance(layer, str):
                index = self._layer_index.get(layer)
                if index is None:
                    raise UnknownLayerError(
                        f"{name}: unknown layer {layer!r}; valid names are: "
                        f"{', '.join(self._layer_names)}")
            elif isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
                index = int(layer)
                if not 0 <= index < len(self._layer_names):
                    raise UnknownLayerError(
                        f"{name}: layer index {index} is out of range; the model has "
                        f"{len(self._layer_names)} layers")
            else:
                raise TypeError(
                    f"{name}: expected layer names such as 'layer4' (see model.layer_names), "
                    f"got {type(layer).__name__}; torch modules cannot be passed to swiftcam")
            if not (unique and index in indices):
                indices.append(index)
        return indices


# -- loading ----------------------------------------------------------------------------------

def load(source, labels=None):
    """Load a torchvision ResNet's weights into the swiftcam engine.

    Parameters
    ----------
    source : str, os.PathLike, Mapping or torch.nn.Module
        A ``.safetensors`` file (memory-mapped; F32, F16, BF16 and F64 tensors), a file written
        by ``torch.save`` (``.pth``, ``.pt``, ...: a state dict or a checkpoint holding one, read
        without torch by :func:`swiftcam.read_pth`, which refuses pickles that reach for
        anything but tensors and containers), or a state dict mapping torchvision key names to
        arrays (NumPy arrays, torch tensors, anything ``np.asarray`` accepts). Keys ending in
        ``num_batches_tracked`` are ignored; other dtypes are converted to float32 once. A torch
        module goes through :func:`swiftcam.from_torch`, so its submodules work as layers.

    labels : sequence of str, optional
        Class names (``num_classes`` of them). By default a 1000-class model gets the ImageNet-1k
        names shipped with swiftcam, and other models none.

    Returns
    -------
    Model

    Raises
    ------
    ModelFileNotFoundError
        The file does not exist (a FileNotFoundError).
    FileFormatError
        The file is not well-formed safetensors, or is another format.
    WeightsError
        A tensor is missing, unexpected or mis-shaped.
    UnsupportedModelError
        The weights do not describe a supported ResNet.
    """
    model = _load(source)
    model.labels = labels if labels is not None else _default_labels(model.num_classes)
    return model


def _load(source):
    if isinstance(source, (str, bytes, os.PathLike)):
        return _load_file(source)
    if not isinstance(source, Mapping) and callable(getattr(source, "named_modules", None)):
        from .torch_interop import from_torch  # imports this module
        return from_torch(source)
    if not isinstance(source, Mapping) and callable(getattr(source, "state_dict", None)):
        source = source.state_dict()
    if isinstance(source, Mapping) or callable(getattr(source, "items", None)):
        return _load_mapping(source)
    raise TypeError(
        "load() expects a path to a .safetensors file or a state dict (a mapping of tensor "
        f"names to arrays), got {type(source).__name__}")


def _load_file(source):
    path = os.fsdecode(os.fspath(source))
    if not os.path.exists(path):
        raise ModelFileNotFoundError.for_path(path)
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise SwiftCAMIOError(errno.EISDIR,
                              "is a directory; expected a .safetensors weights file", path)
    if not stat.S_ISREG(mode):
        # A FIFO would block in open(); a device could be endless.
        raise SwiftCAMIOError(errno.EINVAL, "is not a regular file (a FIFO, socket or device); "
                              "expected a .safetensors weights file", path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _TORCH_SUFFIXES or _pth.is_torch_file(path):
        return _load_mapping(_pth.read_pth(path), source=path)
    if suffix in _OTHER_FORMATS:
        raise FileFormatError(
            f"{path}: looks like {_OTHER_FORMATS[suffix]} ({suffix}); swiftcam reads "
            ".safetensors files or state dicts: load it with its own library and pass the "
            "state dict, e.g. swiftcam.load(torch.load(path, map_location='cpu'))")
    try:
        handle = _native.load_file(path)
    except FileFormatError as error:
        if suffix != ".safetensors":
            raise _with_prefix(error, f"{path} (expected a .safetensors file)") from None
        if path not in str(error):
            raise _with_prefix(error, path) from None
        raise
    return Model(handle, source=path)


def _load_mapping(state_dict, source=None):
    items = _float32_items(state_dict)
    model = Model(_native.load_tensors(items), source=source)
    if source is None:
        model._weights = dict(items)
    return model


def _float32_items(state_dict):
    """(name, float32 C-contiguous array) pairs of a state dict, batch-norm counters skipped."""
    items = []
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise WeightsError(f"state dict keys must be str, got {key!r}")
        if "\0" in key:
            raise WeightsError(f"{key!r}: tensor names must not contain NUL characters")
        if key.endswith("num_batches_tracked"):
            continue
        array = to_numpy(value, key)
        if array.dtype.kind not in "biuf":
            raise WeightsError(f"{key}: expected a real numeric tensor, got dtype {array.dtype}")
        items.append((key, as_float32(array, key)))
    return items


def _read_state_dict_file(path):
    """The tensors of a weights file as a dict (torch.save files or safetensors)."""
    if not os.path.exists(path):
        raise ModelFileNotFoundError.for_path(path)
    if os.path.splitext(path)[1].lower() in _TORCH_SUFFIXES or _pth.is_torch_file(path):
        return _pth.read_pth(path)
    return _safetensors.read(path)


def _default_labels(num_classes):
    """The shipped ImageNet-1k class names for a 1000-class model, else None."""
    if num_classes != 1000:
        return None
    with open(os.path.join(os.path.dirname(__file__), "data", "imagenet_classes.json"),
              encoding="utf-8") as file:
        return json.load(file)


def _checked_labels(labels, num_classes):
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise InvalidInputError(f"labels: expected a sequence of {num_classes} class names, got "
                                f"{type(labels).__name__}")
    labels = tuple(str(label) for label in labels)
    if len(labels) != num_classes:
        raise InvalidInputError(f"labels: expected {num_classes} class names (one per class), "
                                f"got {len(labels)}")
    return labels
