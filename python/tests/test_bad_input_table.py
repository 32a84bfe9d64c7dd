"""Bad inputs through the public API, each in a child interpreter: a crash fails one case.

Issue 8 ("never crash, never leak, never run untrusted code"). Every case below is a function
registered with ``@case``; it calls the public API the way a user would. The expected outcome is
either an exception (its exact class, the builtin it must also be, and a regular expression its
message must match: the message has to say what was expected) or, for ``works=True``, a normal
return (the function asserts what the result must be).

The cases do not run in the pytest process. A supervisor (``_Supervisor``) feeds case names to
two worker interpreters (this file run as a script with ``--worker``), one at a time, and reads
one JSON line back per case. A worker that dies (a segfault, a Swift trap, an abort) or stops
answering within the case's timeout is recorded as a crash or a hang of the case it was running,
and a fresh worker takes the remaining cases; so one crash fails one test and never the run.
Cases marked ``isolated`` (process-wide state such as a memory limit) get a worker of their own.

Run one case by hand::

    python3 python/tests/test_bad_input_table.py --worker <<< header_deep_nesting
    python3 python/tests/test_bad_input_table.py --list
"""

import io
import json
import os
import pickle
import re
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("SWIFTCAM_FIXTURES", REPO_ROOT / "Tests" / "Fixtures"))
BASIC_WEIGHTS = FIXTURES / "basic" / "weights.safetensors"
PTH_DATA = Path(__file__).resolve().parent / "data" / "pth"

# -- the case registry ---------------------------------------------------------------------------

CASES = {}


class Case:
    def __init__(self, name, function, raises, builtin, match, works, isolated, timeout):
        self.name = name
        self.function = function
        self.raises = raises      # "swiftcam.errors.InputShapeError", "builtins.TypeError", ...
        self.builtin = builtin    # "ValueError", "TypeError", "OSError", "MemoryError", ...
        self.match = match        # regular expression searched in str(exception)
        self.works = works
        self.isolated = isolated
        self.timeout = timeout


def case(name, raises=None, builtin=None, match="", works=False, isolated=False, timeout=30.0):
    """Register a case. ``raises`` is the exact exception class name as ``module.QualName``
    (``errors.X`` is short for ``swiftcam.errors.X``, a bare builtin name for ``builtins.X``)."""
    if raises is not None and "." not in raises:
        raises = f"builtins.{raises}"
    elif raises is not None and raises.startswith("errors."):
        raises = f"swiftcam.{raises}"
    if (raises is None) == (not works):
        raise AssertionError(f"case {name}: give either raises= or works=True")

    def register(function):
        if name in CASES:
            raise AssertionError(f"duplicate case {name}")
        CASES[name] = Case(name, function, raises, builtin, match, works, isolated, timeout)
        return function

    return register


# -- what the cases work with (created fresh for every case, in the worker) ----------------------


class Env:
    """A fresh temporary directory and lazily made inputs for one case."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self._model = None

    @property
    def swiftcam(self):
        import swiftcam
        return swiftcam

    @property
    def model(self):
        """A fresh basic-fixture model (10 classes, 3 channels), closed after the case."""
        if self._model is None:
            self._model = self.swiftcam.load(BASIC_WEIGHTS)
        return self._model

    def close(self):
        if self._model is not None:
            self._model.close()

    @staticmethod
    def x(n=2, h=32, w=32, seed=0):
        return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)

    def cam(self, cls="GradCAM", layers=("layer4",)):
        return getattr(self.swiftcam, cls)(self.model, target_layers=list(layers))

    # -- weights and files

    @property
    def state(self):
        from swiftcam import _safetensors
        return dict(_safetensors.read(BASIC_WEIGHTS))

    @property
    def raw(self):
        return BASIC_WEIGHTS.read_bytes()

    def header_and_data(self):
        raw = self.raw
        (length,) = struct.unpack("<Q", raw[:8])
        return json.loads(raw[8:8 + length]), raw[8 + length:]

    def write(self, name, data):
        path = self.dir / name
        path.write_bytes(data)
        return path

    def load_bytes(self, data, name="edited.safetensors"):
        return self.swiftcam.load(self.write(name, data))

    def load_edited_header(self, edit):
        """Load the basic fixture with its JSON header changed by ``edit(header)``."""
        header, data = self.header_and_data()
        edit(header)
        return self.load_bytes(safetensors_bytes(header, data))

    def load_state_file(self, state):
        from swiftcam import _safetensors
        path = self.dir / "state.safetensors"
        _safetensors.write(path, state)
        return self.swiftcam.load(path)

    # -- torch.save files

    def load_pth(self, path):
        """``swiftcam.load(path)`` for a .pth file; while load() does not read .pth files yet
        (it points to torch.load), the same through ``swiftcam.pth.read_pth``."""
        swiftcam = self.swiftcam
        try:
            return swiftcam.load(path)
        except swiftcam.FileFormatError as error:
            if "looks like a torch checkpoint" not in str(error):
                raise
        from swiftcam import pth
        return swiftcam.load(pth.read_pth(path))

    def pth_with(self, replace=None, drop=(), name="edited.pth"):
        """resnet_tiny.pth with members replaced (suffix of the name -> bytes) or dropped."""
        source = zipfile.ZipFile(PTH_DATA / "resnet_tiny.pth")
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
            for info in source.infolist():
                if any(info.filename.endswith(suffix) for suffix in drop):
                    continue
                data = source.read(info.filename)
                for suffix, new in (replace or {}).items():
                    if info.filename.endswith(suffix):
                        data = new
                target.writestr(info.filename, data)
        return self.write(name, out.getvalue())


def safetensors_bytes(header, data, length=None):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


# ================================================================================================
# The cases
# ================================================================================================

NUMERIC = r"expected a real numeric array \(float32 preferred\), got dtype "

# -- unconvertible dtypes ------------------------------------------------------------------------


@case("dtype_object", raises="errors.InvalidInputError", builtin="ValueError",
      match=NUMERIC + "object")
def _(env):
    x = np.empty((1, 3, 8, 8), dtype=object)
    x[...] = 1.0
    env.model(x)


@case("dtype_str", raises="errors.InvalidInputError", builtin="ValueError", match=NUMERIC + "<U1")
def _(env):
    env.model(np.full((1, 3, 8, 8), "a"))


@case("dtype_bytes", raises="errors.InvalidInputError", builtin="ValueError",
      match=NUMERIC + r"\|S2")
def _(env):
    env.model(np.zeros((1, 3, 8, 8), dtype="S2"))


@case("dtype_complex", raises="errors.InvalidInputError", builtin="ValueError",
      match=NUMERIC + "complex64.*complex")
def _(env):
    env.model(np.zeros((1, 3, 8, 8), dtype=np.complex64))


@case("dtype_datetime", raises="errors.InvalidInputError", builtin="ValueError",
      match=NUMERIC + "datetime64")
def _(env):
    env.model(np.zeros((1, 3, 8, 8), dtype="datetime64[s]"))


@case("dtype_timedelta", raises="errors.InvalidInputError", builtin="ValueError",
      match=NUMERIC + "timedelta64")
def _(env):
    env.model(np.zeros((1, 3, 8, 8), dtype="timedelta64[ms]"))


@case("dtype_structured", raises="errors.InvalidInputError", builtin="ValueError",
      match=NUMERIC + r"\[\('r', '<f4'\), \('g', '<f4'\)\]")
def _(env):
    env.model(np.zeros((1, 3, 8, 8), dtype=[("r", "<f4"), ("g", "<f4")]))


@case("dtype_complex_in_cam", raises="errors.InvalidInputError", builtin="ValueError",
      match="input_tensor: " + NUMERIC + "complex128")
def _(env):
    env.cam()(np.zeros((1, 3, 8, 8), dtype=np.complex128))


@case("ragged_nested_list", raises="errors.InvalidInputError", builtin="ValueError",
      match="cannot be converted to a numeric array")
def _(env):
    env.model([[[[1.0, 2.0], [3.0]]]])


# -- ranks, channels, sizes ----------------------------------------------------------------------

RANK = r"x: expected shape \(N, 3, H, W\), got {} dimension\(s\)"


@case("rank0", raises="errors.InputShapeError", builtin="ValueError", match=RANK.format(0))
def _(env):
    env.model(np.float32(1.0))


@case("rank1", raises="errors.InputShapeError", builtin="ValueError", match=RANK.format(1))
def _(env):
    env.model(np.zeros(32, np.float32))


@case("rank2", raises="errors.InputShapeError", builtin="ValueError", match=RANK.format(2))
def _(env):
    env.model(np.zeros((32, 32), np.float32))


@case("rank3_suggests_batch_axis", raises="errors.InputShapeError", builtin="ValueError",
      match=r"single image of shape \(3, 32, 32\); add a batch axis with x\[None\]")
def _(env):
    env.model(np.zeros((3, 32, 32), np.float32))


@case("rank3_in_cam_suggests_batch_axis", raises="errors.InputShapeError", builtin="ValueError",
      match=r"input_tensor: .*single image.*x\[None\]")
def _(env):
    env.cam()(np.zeros((3, 32, 32), np.float32))


@case("rank5", raises="errors.InputShapeError", builtin="ValueError",
      match=RANK.format(5) + r" with shape \(1, 1, 3, 8, 8\)")
def _(env):
    env.model(np.zeros((1, 1, 3, 8, 8), np.float32))


@case("channels_4", raises="errors.InputShapeError", builtin="ValueError",
      match=r"got \(2, 4, 16, 16\): the model takes 3 channels")
def _(env):
    env.model(np.zeros((2, 4, 16, 16), np.float32))


@case("channels_1_grayscale", raises="errors.InputShapeError", builtin="ValueError",
      match=r"the model takes 3 channels")
def _(env):
    env.model(np.zeros((2, 1, 16, 16), np.float32))


@case("channels_last_hint", raises="errors.InputShapeError", builtin="ValueError",
      match=r"channels-last \(N, H, W, C\): use x\.transpose\(0, 3, 1, 2\)")
def _(env):
    env.model(np.zeros((1, 16, 16, 3), np.float32))


@case("empty_batch", raises="errors.InputShapeError", builtin="ValueError",
      match=r"the batch is empty: got shape \(0, 3, 32, 32\)")
def _(env):
    env.model(np.zeros((0, 3, 32, 32), np.float32))


@case("empty_batch_in_top_k", raises="errors.InputShapeError", builtin="ValueError",
      match=r"the batch is empty")
def _(env):
    env.cam().top_k(np.zeros((0, 3, 32, 32), np.float32), k=2)


@case("zero_height", raises="errors.InputShapeError", builtin="ValueError",
      match=r"too small: got shape \(1, 3, 0, 32\), height and width must be at least 1")
def _(env):
    env.model(np.zeros((1, 3, 0, 32), np.float32))


@case("zero_width_in_cam", raises="errors.InputShapeError", builtin="ValueError",
      match=r"too small.*at least 1")
def _(env):
    env.cam()(np.zeros((1, 3, 32, 0), np.float32))


@case("tiny_1x1_image", works=True)
def _(env):
    logits = env.model(np.ones((1, 3, 1, 1), np.float32))
    assert logits.shape == (1, 10) and np.isfinite(logits).all()
    heat = env.cam()(np.ones((1, 3, 1, 1), np.float32))
    assert heat.shape == (1, 1, 1)


@case("too_large_to_allocate", raises="errors.OutOfMemoryError", builtin="MemoryError",
      match=r"allocat")
def _(env):
    # 18 TiB once converted; np.broadcast_to makes the view without allocating anything.
    x = np.broadcast_to(np.float64(0.5), (100000, 3, 4096, 4096))
    env.model(x)


@case("engine_out_of_memory", raises="errors.OutOfMemoryError", builtin="MemoryError",
      match=r"cannot allocate \d+ bytes", isolated=True)
def _(env):
    # A zero-copy input (float32, C-contiguous) that costs nothing: a sparse file mapped
    # read-only. The engine's first activation (16 x 64 x 512 x 512 floats = 1 GiB) cannot be
    # allocated under an address-space limit of 128 MiB above what the process maps now.
    import resource
    shape = (16, 3, 1024, 1024)
    path = env.dir / "sparse.f32"
    with open(path, "wb") as file:
        file.truncate(int(np.prod(shape)) * 4)
    x = np.memmap(path, dtype=np.float32, mode="r", shape=shape)
    model = env.model
    with open("/proc/self/status") as status:
        vm_kib = int(re.search(r"VmSize:\s+(\d+)", status.read()).group(1))
    resource.setrlimit(resource.RLIMIT_AS, (vm_kib * 1024 + (128 << 20), resource.RLIM_INFINITY))
    model(x)


@case("layer_shape_overflowing_int64", raises="errors.OutOfMemoryError", builtin="MemoryError",
      match=r"too large")
def _(env):
    # (2**62, ...) is already reported as OutOfMemoryError "too large"; 2**63 must be too.
    env.model.layer_shape("layer4", (2**63, 3, 8, 8))


# -- NaN and Inf in the input: the forward pass propagates them per image, like torch; CAMs refuse
# them (README, "Guarantees") -----------------------------------------------------------------


@case("nan_input_propagates_per_image", works=True)
def _(env):
    x = env.x(3)
    clean = env.model(x)
    x[1, 2, 5, 7] = np.nan
    logits = env.model(x)
    assert np.isnan(logits[1]).all(), logits[1]            # like torch: NaN in, NaN out
    np.testing.assert_allclose(logits[[0, 2]], clean[[0, 2]], rtol=0, atol=1e-6)


@case("inf_input_propagates_per_image", works=True)
def _(env):
    x = env.x(2)
    clean = env.model(x)
    x[0] = np.inf
    logits = env.model(x)
    assert not np.isfinite(logits[0]).any()
    np.testing.assert_allclose(logits[1], clean[1], rtol=0, atol=1e-6)


@case("nan_input_cam_refused", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"expected finite values, got nan at index \(0, 1, 3, 4\)")
def _(env):
    x = env.x(2)
    x[0, 1, 3, 4] = np.nan
    env.cam("GradCAM")(x, targets=[1, 2])


@case("inf_input_top_k_refused", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"expected finite values, got -?inf")
def _(env):
    x = env.x(2)
    x[1] = -np.inf
    env.cam().top_k(x, k=3)


@case("nan_input_fullgrad_refused", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"expected finite values, got nan at index \(1, 0, 0, 0\)")
def _(env):
    x = env.x(2)
    x[1, 0, 0, 0] = np.nan
    env.swiftcam.FullGrad(env.model)(x, targets=[1, 2])


# -- targets -------------------------------------------------------------------------------------


@case("target_negative_class", raises="errors.InvalidInputError", builtin="ValueError",
      match="category must be a non-negative class index, got -1")
def _(env):
    env.cam()(env.x(2), targets=[env.swiftcam.ClassifierOutputTarget(-1)] * 2)


@case("target_class_equal_to_num_classes", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"targets\[0\]: class index 10 is out of range for a model with 10 classes")
def _(env):
    env.cam()(env.x(2), targets=[env.swiftcam.ClassifierOutputTarget(10), 1])


@case("target_plain_int_too_large", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"targets\[1\]: class index 1000 is out of range for a model with 10 classes")
def _(env):
    env.cam()(env.x(2), targets=[1, 1000])


@case("target_plain_int_negative", raises="errors.InvalidInputError", builtin="ValueError",
      match="non-negative class index")
def _(env):
    env.cam()(env.x(2), targets=[np.int64(-3), 1])


@case("target_softmax_out_of_range", raises="errors.InvalidInputError", builtin="ValueError",
      match="class index 12 is out of range for a model with 10 classes")
def _(env):
    env.cam()(env.x(1), targets=[env.swiftcam.ClassifierOutputSoftmaxTarget(12)])


@case("target_linear_wrong_length", raises="errors.InvalidInputError", builtin="ValueError",
      match="5 entries for a model with 10 classes")
def _(env):
    env.cam()(env.x(1), targets=[env.swiftcam.ClassifierOutputLinearTarget(np.ones(5))])


@case("target_non_integer_class", raises="TypeError", builtin="TypeError",
      match="category must be an int class index, got float")
def _(env):
    env.swiftcam.ClassifierOutputTarget(2.5)


@case("target_bool_class", raises="TypeError", builtin="TypeError",
      match="category must be an int class index")
def _(env):
    env.swiftcam.ClassifierOutputTarget(True)


@case("target_float_in_list", raises="TypeError", builtin="TypeError",
      match=r"targets\[0\]: float has no gradient\(logits_row\) method.*ClassifierOutputTarget")
def _(env):
    env.cam()(env.x(2), targets=[1.0, 2])


@case("targets_longer_than_batch", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"got 3 target\(s\) for a batch of 2 image\(s\); pass exactly one target per image")
def _(env):
    env.cam()(env.x(2), targets=[1, 2, 3])


@case("targets_shorter_than_batch", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"got 1 target\(s\) for a batch of 2 image\(s\)")
def _(env):
    env.cam()(env.x(2), targets=[1])


@case("targets_single_object_not_list", raises="TypeError", builtin="TypeError",
      match=r"expected a list with one target per image, got a single target")
def _(env):
    env.cam()(env.x(2), targets=env.swiftcam.ClassifierOutputTarget(1))


@case("targets_string", raises="TypeError", builtin="TypeError",
      match=r"expected a list of targets, got str")
def _(env):
    env.cam()(env.x(2), targets="12")


@case("target_gradient_non_finite", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"targets\[0\]: gradient\(\) returned non-finite values")
def _(env):
    class Bad:
        def __call__(self, row):
            return row[0]

        def gradient(self, row):
            return np.full(row.shape, np.nan)

    env.cam()(env.x(1), targets=[Bad()])


@case("target_gradient_wrong_shape", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"gradient\(\) returned shape \(3,\), expected \(10,\)")
def _(env):
    class Bad:
        def __call__(self, row):
            return row[0]

        def gradient(self, row):
            return np.ones(3)

    env.cam()(env.x(1), targets=[Bad()])


@case("gradients_target_out_of_range", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"targets\[1\]: class index 99 is out of range")
def _(env):
    env.model.gradients(env.x(2), targets=[1, 99], layers=["layer4"])


# -- layers --------------------------------------------------------------------------------------


@case("layer_unknown_name", raises="errors.UnknownLayerError", builtin="KeyError",
      match=r"target_layers: unknown layer 'layer5'; valid names are: conv1, bn1, relu")
def _(env):
    env.cam(layers=["layer5"])


@case("layer_unknown_name_activations", raises="errors.UnknownLayerError", builtin="ValueError",
      match=r"layers: unknown layer 'fc'; valid names are: .*avgpool")
def _(env):
    env.model.activations(env.x(1), layers=["layer4", "fc"])


@case("layer_duplicate", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"target_layers: a layer is listed twice in \['layer4', 'layer3', 'layer4'\]")
def _(env):
    env.cam(layers=["layer4", "layer3", "layer4"])


@case("layer_list_empty", raises="errors.InvalidInputError", builtin="ValueError",
      match="target_layers: expected at least one layer name")
def _(env):
    env.cam(layers=[])


@case("layer_index_out_of_range", raises="errors.UnknownLayerError", builtin="KeyError",
      match="layer index 14 is out of range; the model has 14 layers")
def _(env):
    env.cam(layers=[14])


@case("layer_index_negative", raises="errors.UnknownLayerError", builtin="ValueError",
      match="layer index -1 is out of range")
def _(env):
    env.model.activations(env.x(1), layers=[-1])


@case("layer_given_as_module_object", raises="TypeError", builtin="TypeError",
      match="expected layer names such as 'layer4'.*got object")
def _(env):
    env.cam(layers=[object()])


# -- top_k ---------------------------------------------------------------------------------------


@case("top_k_zero", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"k must be between 1 and 10 \(the number of classes\), got 0")
def _(env):
    env.cam().top_k(env.x(1), k=0)


@case("top_k_more_than_classes", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"k must be between 1 and 10 .*got 11")
def _(env):
    env.cam().top_k(env.x(1), k=11)


@case("top_k_negative", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"k must be between 1 and 10 .*got -2")
def _(env):
    env.cam().top_k(env.x(1), k=-2)


@case("top_k_bool", raises="TypeError", builtin="TypeError", match="k must be an int, got bool")
def _(env):
    env.cam().top_k(env.x(1), k=True)


@case("top_k_float", raises="TypeError", builtin="TypeError", match="k must be an int, got float")
def _(env):
    env.cam().top_k(env.x(1), k=2.0)


@case("top_k_all_classes_works", works=True)
def _(env):
    heat, classes = env.cam().top_k(env.x(2), k=np.int64(10))
    assert heat.shape == (2, 10, 32, 32) and classes.shape == (2, 10)
    assert sorted(classes[0].tolist()) == list(range(10))


# -- layouts and dtypes that must simply work ----------------------------------------------------


def _same_everywhere(env, x, reference):
    """model(x) and a CAM of x equal those of ``reference`` (a float32 C-contiguous array)."""
    np.testing.assert_array_equal(env.model(x), env.model(reference))
    cam = env.cam("GradCAM", layers=("layer3", "layer4"))
    np.testing.assert_array_equal(cam(x, targets=[1] * len(reference)),
                                  cam(reference, targets=[1] * len(reference)))


@case("non_contiguous_works", works=True)
def _(env):
    big = env.x(2, 64, 64)
    x = big[:, :, ::2, 1::2]
    assert not x.flags.c_contiguous
    _same_everywhere(env, x, np.ascontiguousarray(x))


@case("negative_strides_works", works=True)
def _(env):
    x = env.x(2)[:, ::-1, :, ::-1]
    _same_everywhere(env, x, np.ascontiguousarray(x))


@case("read_only_works_without_copy", works=True)
def _(env):
    x = env.x(2)
    reference = x.copy()
    x.setflags(write=False)
    _same_everywhere(env, x, reference)
    env.model(x)
    assert env.model._last_input_address() == x.ctypes.data  # read in place, not copied


@case("fortran_order_works", works=True)
def _(env):
    x = np.asfortranarray(env.x(2))
    assert not x.flags.c_contiguous
    _same_everywhere(env, x, np.ascontiguousarray(x))


@case("float64_works", works=True)
def _(env):
    x64 = env.x(2).astype(np.float64) * 1.0000001
    _same_everywhere(env, x64, x64.astype(np.float32))


@case("uint8_and_bool_work", works=True)
def _(env):
    x8 = np.random.default_rng(1).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    _same_everywhere(env, x8, x8.astype(np.float32))
    xb = x8 > 128
    _same_everywhere(env, xb, xb.astype(np.float32))


@case("big_endian_works", works=True)
def _(env):
    x = env.x(2)
    _same_everywhere(env, x.astype(">f4"), x)


@case("misaligned_float32_works", works=True)
def _(env):
    x = env.x(2)
    buffer = bytearray(x.nbytes + 1)
    view = np.frombuffer(buffer, dtype=np.float32, offset=1, count=x.size).reshape(x.shape)
    view[...] = x
    assert not view.flags.aligned
    _same_everywhere(env, view, x)


@case("broadcast_view_works", works=True)
def _(env):
    x = np.broadcast_to(env.x(1), (3, 3, 32, 32))
    _same_everywhere(env, x, np.ascontiguousarray(x))


@case("nested_list_works", works=True)
def _(env):
    x = env.x(1, 8, 8)
    _same_everywhere(env, x.tolist(), x)


# -- closed models -------------------------------------------------------------------------------


@case("closed_model_forward", raises="errors.ModelClosedError", builtin="ValueError",
      match="the model is closed")
def _(env):
    model = env.model
    model.close()
    model(env.x(1))


@case("closed_model_activations", raises="errors.ModelClosedError", builtin="ValueError",
      match="closed")
def _(env):
    with env.swiftcam.load(BASIC_WEIGHTS) as model:
        pass
    model.activations(env.x(1), ["layer4"])


@case("closed_model_layer_shape", raises="errors.ModelClosedError", builtin="ValueError",
      match="closed")
def _(env):
    env.model.close()
    env.model.layer_shape("layer4", (1, 3, 32, 32))


@case("cam_of_closed_model", raises="errors.ModelClosedError", builtin="ValueError",
      match="the model is closed")
def _(env):
    cam = env.cam("GradCAMPlusPlus")
    env.model.close()
    cam(env.x(1))


@case("cam_top_k_of_closed_model", raises="errors.ModelClosedError", builtin="ValueError",
      match="closed")
def _(env):
    cam = env.cam("EigenCAM")
    env.model.close()
    cam.top_k(env.x(1), k=2)


@case("fullgrad_of_closed_model", raises="errors.ModelClosedError", builtin="ValueError",
      match="the model is closed")
def _(env):
    cam = env.swiftcam.FullGrad(env.model)
    env.model.close()
    cam.top_k(env.x(1), k=2)


@case("fullgrad_model_not_a_swiftcam_model", raises="TypeError", builtin="TypeError",
      match="model: expected a swiftcam.Model, got dict")
def _(env):
    env.swiftcam.FullGrad({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)})


@case("fullgrad_eigen_smooth_input_smaller_than_8", raises="errors.InvalidInputError",
      builtin="ValueError", match=r"needs H, W >= 8, got 7x32")
def _(env):
    env.swiftcam.FullGrad(env.model)(env.x(1, h=7), eigen_smooth=True)


@case("close_twice_and_describe_works", works=True)
def _(env):
    model = env.model
    model.close()
    model.close()
    assert model.closed and "closed" in repr(model) and model.num_classes == 10


# -- safetensors files ---------------------------------------------------------------------------

OFFSETS = r"data_offsets must be two integers \[begin, end\] with 0 <= begin <= end <= \d+"


@case("file_truncated_in_half", raises="errors.FileFormatError", builtin="ValueError",
      match=OFFSETS)
def _(env):
    raw = env.raw
    env.load_bytes(raw[: len(raw) // 2])


@case("file_missing_last_byte", raises="errors.FileFormatError", builtin="ValueError",
      match=OFFSETS)
def _(env):
    env.load_bytes(env.raw[:-1])


@case("file_truncated_in_header", raises="errors.FileFormatError", builtin="ValueError",
      match=r"header claims \d+ bytes but the file has 92")
def _(env):
    env.load_bytes(env.raw[:100])


@case("file_shorter_than_length_prefix", raises="errors.FileFormatError", builtin="ValueError",
      match="4 bytes, too short for the 8-byte header length")
def _(env):
    env.load_bytes(env.raw[:4])


@case("file_empty", raises="errors.FileFormatError", builtin="ValueError",
      match="0 bytes, too short for the 8-byte header length")
def _(env):
    env.load_bytes(b"")


@case("header_overlapping_offsets", raises="errors.FileFormatError", builtin="ValueError",
      match=r"the data of tensors '.*' and '.*' overlap")
def _(env):
    def edit(header):
        begin = header["conv1.weight"]["data_offsets"][0]
        entry = header["bn1.weight"]
        size = entry["data_offsets"][1] - entry["data_offsets"][0]
        entry["data_offsets"] = [begin, begin + size]
    env.load_edited_header(edit)


@case("header_overlap_behind_empty_tensor", raises="errors.FileFormatError", builtin="ValueError",
      match=r"overlap")
def _(env):
    # fc.bias points into layer1.0.conv1.weight's bytes; an empty tensor (the ignored batch
    # counter) placed between their starts hides the overlap from the sorted-neighbour check.
    def edit(header):
        begin = header["layer1.0.conv1.weight"]["data_offsets"][0]
        header["bn1.num_batches_tracked"] = {"dtype": "I64", "shape": [0],
                                             "data_offsets": [begin + 4, begin + 4]}
        header["fc.bias"]["data_offsets"] = [begin + 8, begin + 48]
    env.load_edited_header(edit)


@case("header_offsets_past_end", raises="errors.FileFormatError", builtin="ValueError",
      match=r"tensor 'fc\.bias': " + OFFSETS)
def _(env):
    header, data = env.header_and_data()
    header["fc.bias"]["data_offsets"] = [len(data) - 4, len(data) + 36]
    env.load_bytes(safetensors_bytes(header, data))


@case("header_offsets_negative", raises="errors.FileFormatError", builtin="ValueError",
      match=OFFSETS)
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(data_offsets=[-40, 0]))


@case("header_offsets_reversed", raises="errors.FileFormatError", builtin="ValueError",
      match=OFFSETS)
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(data_offsets=[40, 0]))


@case("header_offsets_not_a_pair", raises="errors.FileFormatError", builtin="ValueError",
      match=OFFSETS)
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(data_offsets=[0, 40, 80]))


@case("header_offsets_huge_numbers", raises="errors.FileFormatError", builtin="ValueError",
      match=OFFSETS)
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(data_offsets=[1e300, 1.5e300]))


@case("header_length_huge", raises="errors.FileFormatError", builtin="ValueError",
      match=r"header claims 9223372036854775813 bytes but the file has \d+")
def _(env):
    header, data = env.header_and_data()
    env.load_bytes(safetensors_bytes(header, data, length=2**63 + 5))


@case("header_length_too_long_for_json", raises="errors.FileFormatError", builtin="ValueError",
      match=r"malformed JSON header: trailing characters")
def _(env):
    header, data = env.header_and_data()
    text = json.dumps(header).encode()
    env.load_bytes(safetensors_bytes(text, data, length=len(text) + 1000))


@case("header_unknown_dtype", raises="errors.FileFormatError", builtin="ValueError",
      match=r"tensor 'fc\.bias': unknown dtype 'F33' \(expected one of F64, F32")
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(dtype="F33"))


@case("header_dtype_not_a_string", raises="errors.FileFormatError", builtin="ValueError",
      match=r"tensor 'fc\.bias': missing dtype")
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(dtype=32))


@case("header_negative_shape", raises="errors.FileFormatError", builtin="ValueError",
      match=r"tensor 'fc\.bias': shape entries must be non-negative integers")
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(shape=[-10]))


@case("header_fractional_shape", raises="errors.FileFormatError", builtin="ValueError",
      match=r"shape entries must be non-negative integers")
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(shape=[10.5]))


@case("header_shape_size_mismatch", raises="errors.FileFormatError", builtin="ValueError",
      match=r"tensor 'fc\.bias': shape \[11\] of F32 needs 44 bytes but data_offsets span 40")
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(shape=[11]))


@case("header_shape_overflowing", raises="errors.FileFormatError", builtin="ValueError",
      match=r"too large|needs too many bytes")
def _(env):
    env.load_edited_header(lambda h: h["fc.bias"].update(shape=[2**31 - 1] * 3))


@case("header_not_json", raises="errors.FileFormatError", builtin="ValueError",
      match=r"malformed JSON header: invalid literal at byte 6")
def _(env):
    env.load_bytes(safetensors_bytes(b'{"a": nope}', b""))


@case("header_not_an_object", raises="errors.FileFormatError", builtin="ValueError",
      match="the safetensors header is not a JSON object")
def _(env):
    env.load_bytes(safetensors_bytes(b"[1, 2, 3]", b""))


@case("header_duplicate_keys", raises="errors.FileFormatError", builtin="ValueError",
      match=r"tensor 'fc\.bias' appears twice in the header")
def _(env):
    header, data = env.header_and_data()
    entry = json.dumps(header["fc.bias"])
    text = json.dumps(header).encode()[:-1] + b', "fc.bias": ' + entry.encode() + b"}"
    env.load_bytes(safetensors_bytes(text, data))


@case("header_deep_nesting", raises="errors.FileFormatError", builtin="ValueError",
      match=r"nesting deeper than 64")
def _(env):
    env.load_bytes(safetensors_bytes(b'{"a":' + b"[" * 200000 + b"]" * 200000 + b"}", b""))


@case("header_entry_not_an_object", raises="errors.FileFormatError", builtin="ValueError",
      match=r"tensor 'fc\.bias': missing dtype")
def _(env):
    env.load_edited_header(lambda h: h.update({"fc.bias": 3}))


@case("header_metadata_not_strings", raises="errors.FileFormatError", builtin="ValueError",
      match=r"__metadata__\['epoch'\] is not a string")
def _(env):
    env.load_edited_header(lambda h: h.update({"__metadata__": {"epoch": 3}}))


@case("header_trailing_garbage", raises="errors.FileFormatError", builtin="ValueError",
      match="trailing characters")
def _(env):
    header, data = env.header_and_data()
    env.load_bytes(safetensors_bytes(json.dumps(header).encode() + b" x", data))


@case("file_int64_conv_weight", raises="errors.WeightsError", builtin="ValueError",
      match=r"tensor 'conv1\.weight' has dtype I64; weights must be floating point")
def _(env):
    state = env.state
    state["conv1.weight"] = state["conv1.weight"].astype(np.int64)
    env.load_state_file(state)


@case("file_missing_tensor", raises="errors.WeightsError", builtin="ValueError",
      match=r"missing tensor 'layer3\.0\.bn1\.bias'")
def _(env):
    state = env.state
    del state["layer3.0.bn1.bias"]
    env.load_state_file(state)


@case("file_float16_and_float64_work", works=True)
def _(env):
    state = env.state
    reference = env.model(env.x(1))
    for dtype, tolerance in ((np.float64, 1e-6), (np.float16, 0.05)):
        model = env.load_state_file({k: v.astype(dtype) for k, v in state.items()})
        np.testing.assert_allclose(model(env.x(1)), reference, atol=tolerance, rtol=0)
        model.close()


@case("file_png_bytes_named_safetensors", raises="errors.FileFormatError", builtin="ValueError",
      match=r"not a valid safetensors file: its header claims \d+ bytes")
def _(env):
    env.load_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))


@case("file_fifo_does_not_hang", raises="errors.SwiftCAMIOError", builtin="OSError",
      match="not a regular file", timeout=5.0)
def _(env):
    path = env.dir / "pipe.safetensors"
    os.mkfifo(path)
    env.swiftcam.load(path)


# -- state dicts and paths -----------------------------------------------------------------------


@case("weights_missing_tensor", raises="errors.WeightsError", builtin="ValueError",
      match=r"missing tensor 'layer2\.0\.bn2\.running_var'")
def _(env):
    state = env.state
    del state["layer2.0.bn2.running_var"]
    env.swiftcam.load(state)


@case("weights_misshaped_tensor", raises="errors.WeightsError", builtin="ValueError",
      match=r"tensor 'layer2\.0\.conv2\.weight' has shape \[32, 32, 2, 3\], expected "
            r"\[32, 32, 3, 3\]")
def _(env):
    state = env.state
    state["layer2.0.conv2.weight"] = state["layer2.0.conv2.weight"][:, :, :2].copy()
    env.swiftcam.load(state)


@case("weights_unexpected_tensor", raises="errors.WeightsError", builtin="ValueError",
      match=r"unexpected tensor 'layer9\.0\.conv1\.weight': not part of the inferred")
def _(env):
    state = env.state
    state["layer9.0.conv1.weight"] = np.zeros((2, 2), np.float32)
    env.swiftcam.load(state)


@case("weights_int64_conv_is_converted", works=True)
def _(env):
    state = env.state
    state["conv1.weight"] = np.round(state["conv1.weight"] * 100).astype(np.int64)
    model = env.swiftcam.load(state)
    state["conv1.weight"] = state["conv1.weight"].astype(np.float32)
    np.testing.assert_array_equal(model(env.x(1)), env.swiftcam.load(state)(env.x(1)))


@case("weights_not_a_resnet", raises="errors.UnsupportedModelError", builtin="ValueError",
      match="not a torchvision ResNet state dict: expected tensors such as 'conv1.weight'")
def _(env):
    env.swiftcam.load({"encoder.layers.0.weight": np.zeros((8, 8), np.float32),
                       "head.bias": np.zeros(8, np.float32)})


@case("weights_empty_dict", raises="errors.UnsupportedModelError", builtin="ValueError",
      match="not a torchvision ResNet")
def _(env):
    env.swiftcam.load({})


@case("weights_non_string_key", raises="errors.WeightsError", builtin="ValueError",
      match=r"state dict keys must be str, got \('conv1', 'weight'\)")
def _(env):
    state = env.state
    state[("conv1", "weight")] = state.pop("conv1.weight")
    env.swiftcam.load(state)


@case("weights_key_with_nul_byte", raises="errors.WeightsError", builtin="ValueError",
      match=r"conv1\.weight")
def _(env):
    # "conv1.weight\0junk" is not a torchvision name; it must not pass for "conv1.weight".
    state = env.state
    state["conv1.weight\x00junk"] = state.pop("conv1.weight")
    env.swiftcam.load(state)


@case("weights_non_numeric_value", raises="errors.WeightsError", builtin="ValueError",
      match=r"fc\.bias: expected a real numeric tensor, got dtype <U1")
def _(env):
    state = env.state
    state["fc.bias"] = np.array(["a"] * 10)
    env.swiftcam.load(state)


@case("weights_none_value", raises="errors.WeightsError", builtin="ValueError",
      match=r"fc\.weight: expected a real numeric tensor, got dtype object")
def _(env):
    state = env.state
    state["fc.weight"] = None
    env.swiftcam.load(state)


@case("weights_scalar_stem", raises="errors.UnsupportedModelError", builtin="ValueError",
      match=r"'conv1\.weight' has shape \[\]; a ResNet stem is \(width, channels, 7, 7\)")
def _(env):
    state = env.state
    state["conv1.weight"] = np.float32(1.0)
    env.swiftcam.load(state)


@case("weights_zero_classes", raises="errors.WeightsError", builtin="ValueError",
      match=r"tensor 'fc\.weight' has shape \[0, 128\], expected \(classes, features\)")
def _(env):
    state = env.state
    state["fc.weight"] = np.zeros((0, 128), np.float32)
    state["fc.bias"] = np.zeros(0, np.float32)
    env.swiftcam.load(state)


@case("load_directory", raises="errors.SwiftCAMIOError", builtin="OSError",
      match="is a directory; expected a .safetensors weights file")
def _(env):
    env.swiftcam.load(env.dir)


@case("load_nonexistent_path", raises="errors.ModelFileNotFoundError", builtin="FileNotFoundError",
      match=r"No such file or directory: '.*nope\.safetensors'")
def _(env):
    env.swiftcam.load(env.dir / "nope.safetensors")


@case("load_path_with_nul_byte", raises="errors.ModelFileNotFoundError",
      builtin="FileNotFoundError", match="No such file or directory")
def _(env):
    env.swiftcam.load(str(env.dir / "a\x00b.safetensors"))


@case("load_png_file", raises="errors.FileFormatError", builtin="ValueError",
      match=r"image\.png \(expected a \.safetensors file\)")
def _(env):
    env.swiftcam.load(env.write("image.png", b"\x89PNG\r\n\x1a\n" + bytes(200)))


@case("load_int", raises="TypeError", builtin="TypeError",
      match=r"expects a path to a \.safetensors file or a state dict.*got int")
def _(env):
    env.swiftcam.load(42)


@case("load_none", raises="TypeError", builtin="TypeError", match="got NoneType")
def _(env):
    env.swiftcam.load(None)


# -- torch.save files (.pth): damaged archives and pickles that would run code ------------------


class _Evil:
    """Pickles as a call of ``function(*args)``, as a malicious checkpoint would."""

    def __init__(self, function, args):
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


def _expect_not_executed(env, marker, path):
    try:
        env.load_pth(path)
    finally:
        assert not marker.exists(), "the pickle's code was EXECUTED"


@case("pth_os_system_refused", raises="swiftcam.pth.UnsafePickleError", builtin="ValueError",
      match=r"refusing to load 'posix\.system' from the pickle.*nothing from the file was "
            "executed")
def _(env):
    marker = env.dir / "pwned"
    payload = pickle.dumps(_Evil(os.system, (f"touch {marker}",)), protocol=2)
    _expect_not_executed(env, marker, env.pth_with({"data.pkl": payload}))


@case("pth_builtins_exec_refused", raises="swiftcam.pth.UnsafePickleError", builtin="ValueError",
      match=r"refusing to load '(__builtin__|builtins)\.exec'")
def _(env):
    marker = env.dir / "pwned"
    code = f"open({str(marker)!r}, 'w').write('x')"
    payload = pickle.dumps(_Evil(exec, (code,)), protocol=2)
    _expect_not_executed(env, marker, env.pth_with({"data.pkl": payload}))


@case("pth_nested_payload_refused", raises="swiftcam.pth.UnsafePickleError", builtin="ValueError",
      match=r"refusing to load '(subprocess|commands)\.call'")
def _(env):
    import subprocess as sp
    marker = env.dir / "pwned"
    state = {"conv1.weight": _Evil(sp.call, (["touch", str(marker)],))}
    payload = pickle.dumps({"state_dict": state}, protocol=2)
    _expect_not_executed(env, marker, env.pth_with({"data.pkl": payload}))


@case("pth_whole_pickled_model_refused", raises="swiftcam.pth.UnsafePickleError",
      builtin="ValueError", match=r"torch\.nn.*state_dict\(\)")
def _(env):
    env.load_pth(PTH_DATA / "whole_model.pth")


@case("pth_truncated_zip", raises="errors.FileFormatError", builtin="ValueError",
      match=r"damaged or truncated")
def _(env):
    data = (PTH_DATA / "resnet_tiny.pth").read_bytes()
    env.load_pth(env.write("cut.pth", data[: len(data) // 3]))


@case("pth_garbage_pickle", raises="errors.FileFormatError", builtin="ValueError",
      match=r"pickle")
def _(env):
    env.load_pth(env.pth_with({"data.pkl": b"\x80\x02}q\x00(X\x03\x00\x00\x00abc" + b"\xff" * 20}))


@case("pth_missing_storage", raises="errors.FileFormatError", builtin="ValueError",
      match=r"storage|data/0")
def _(env):
    env.load_pth(env.pth_with(drop=("data/0",)))


@case("pth_short_storage", raises="errors.FileFormatError", builtin="ValueError",
      match=r"storage|bytes")
def _(env):
    env.load_pth(env.pth_with({"data/1": b"\x00" * 6}))


@case("pth_legacy_format", raises="errors.FileFormatError", builtin="ValueError",
      match=r"legacy torch\.save file")
def _(env):
    env.load_pth(PTH_DATA / "legacy.pth")


@case("pth_huge_memo_index", raises="errors.FileFormatError", builtin="ValueError",
      match=r"data\.pkl", isolated=True)
def _(env):
    # 12 bytes of pickle: LONG_BINPUT 2**30. CPython's C unpickler grows its memo table to
    # 2 x index entries (16 GiB) and clears it: a MemoryError under a limit, otherwise
    # gigabytes of RAM and a long stall (the fuzzer found it as a hang). It must be a format
    # error, decided without allocating. The address-space limit keeps this test harmless.
    import resource
    path = env.pth_with({"data.pkl": b"\x80\x02}r\x00\x00\x00\x40."})
    with open("/proc/self/status") as status:
        vm_kib = int(re.search(r"VmSize:\s+(\d+)", status.read()).group(1))
    resource.setrlimit(resource.RLIMIT_AS, (vm_kib * 1024 + (1 << 30), resource.RLIM_INFINITY))
    env.load_pth(path)


@case("pth_memo_index_costs_no_memory", raises="errors.FileFormatError", builtin="ValueError",
      match=r"data\.pkl", isolated=True)
def _(env):
    # Without an address-space limit the same opcode is no MemoryError: LONG_BINPUT 2**24 makes
    # the C unpickler allocate and clear a 2**25-entry memo table (256 MiB) for a 12-byte
    # pickle; 2**30 is 16 GiB, the stall the fuzzer saw. Reading must refuse such an index
    # before unpickling, so the peak RSS may not grow by more than 64 MiB.
    import resource
    path = env.pth_with({"data.pkl": b"\x80\x02}r\x00\x00\x00\x01."})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        env.load_pth(path)
    finally:
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mib < 64, (f"reading a 12-byte pickle raised the peak RSS by "
                                f"{grown_mib:.0f} MiB")


@case("pth_zip_offsets_before_file_start", raises="errors.FileFormatError", builtin="ValueError",
      match=r"archive|zip")
def _(env):
    # The zip64 end record claims the central directory 1 MiB further than it is: every
    # member's offset becomes negative and zipfile's seek fails with OSError(EINVAL), which
    # is not an I/O error but a damaged file.
    data = bytearray((PTH_DATA / "resnet_tiny.pth").read_bytes())
    record = data.rfind(b"PK\x06\x06")
    (offset,) = struct.unpack_from("<Q", data, record + 48)
    struct.pack_into("<Q", data, record + 48, offset + (1 << 20))
    env.load_pth(env.write("offsets.pth", bytes(data)))


@case("pth_zip_unsupported_version", raises="errors.FileFormatError", builtin="ValueError",
      match=r"zip|archive")
def _(env):
    # "version needed to extract" 17.9 in the first central-directory record: zipfile raises
    # NotImplementedError("zip file version 17.9") while opening the archive.
    data = bytearray((PTH_DATA / "resnet_tiny.pth").read_bytes())
    record = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, record + 6, 179)
    env.load_pth(env.write("version.pth", bytes(data)))


@case("pth_corrupt_bzip2_member", raises="errors.FileFormatError", builtin="ValueError",
      match=r"cannot read .* from the archive")
def _(env):
    source = zipfile.ZipFile(PTH_DATA / "resnet_tiny.pth")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_BZIP2) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    data = bytearray(out.getvalue())
    start = data.find(b"BZh")
    data[start + 10:start + 20] = b"\xff" * 10  # the first member's stream (data.pkl)
    env.load_pth(env.write("bzip2.pth", bytes(data)))


@case("pth_fifo_does_not_hang", raises="errors.SwiftCAMIOError", builtin="OSError",
      match="not a regular file|FIFO|pipe", timeout=5.0)
def _(env):
    path = env.dir / "pipe.pth"
    os.mkfifo(path)
    env.load_pth(path)


@case("pth_valid_file_works", works=True)
def _(env):
    model = env.load_pth(PTH_DATA / "resnet_tiny.pth")
    assert model(env.x(1)).shape == (1, 10)


# -- runtime -------------------------------------------------------------------------------------


@case("set_num_threads_zero", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"the number of threads must be (at least 1|between 1 and 4096), got 0",
      isolated=True)
def _(env):
    env.swiftcam.set_num_threads(0)


@case("set_num_threads_too_many", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"at most 4096|between 1 and 4096", isolated=True)
def _(env):
    env.swiftcam.set_num_threads(100000)


@case("set_num_threads_beyond_int64", raises="errors.InvalidInputError", builtin="ValueError",
      match=r"at most 4096|between 1 and 4096", isolated=True)
def _(env):
    env.swiftcam.set_num_threads(2**70)


@case("set_num_threads_float", raises="TypeError", builtin="TypeError",
      match="'float' object cannot be interpreted as an integer", isolated=True)
def _(env):
    env.swiftcam.set_num_threads(2.0)


# -- the supervisor's own check (not part of the table) -------------------------------------------

SELF_TESTS = ("selftest_segfault", "selftest_hang")


@case("selftest_segfault", works=True)
def _(env):
    import ctypes
    ctypes.string_at(0)  # SIGSEGV, as a crash in the engine would


@case("selftest_hang", works=True, timeout=1.0)
def _(env):
    time.sleep(60)


# ================================================================================================
# Worker: runs cases named on stdin, answers one JSON line each on the original stdout
# ================================================================================================


def _qualified(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _run_one(name):
    spec = CASES[name]
    directory = tempfile.mkdtemp(prefix=f"{name}-", dir=os.environ.get("SWIFTCAM_CASE_TMP"))
    env = Env(directory)
    started = time.perf_counter()
    try:
        spec.function(env)
    except BaseException as error:  # noqa: BLE001: reporting every outcome is the point
        result = {"status": "raised", "type": _qualified(type(error)),
                  "mro": [_qualified(c) for c in type(error).__mro__], "message": str(error),
                  "traceback": traceback.format_exc(limit=-6)}
    else:
        result = {"status": "returned"}
    finally:
        try:
            env.close()
        except BaseException:  # noqa: BLE001
            pass
        shutil.rmtree(directory, ignore_errors=True)
    result["name"] = name
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def worker_main():
    import faulthandler

    # The protocol owns the real stdout; anything the cases print goes to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    faulthandler.enable()
    import swiftcam  # noqa: F401  (import once, before the first case)
    protocol.write(json.dumps({"status": "ready"}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        print(f"== case {name}", file=sys.stderr, flush=True)
        protocol.write(json.dumps(_run_one(name)) + "\n")
        protocol.flush()


# ================================================================================================
# Supervisor: workers in child processes, restarted after a crash or a hang
# ================================================================================================


class _Worker:
    def __init__(self, env):
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", __file__, "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
            cwd=str(REPO_ROOT))
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.ready = False

    def _read_line(self, deadline):
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "hang"
            if not self.selector.select(remaining):
                continue
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                return None, "crash"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line), None

    def ask(self, name, timeout):
        """Run one case; returns its result dict, or None on EOF (crash) or timeout (hang)."""
        try:
            self.process.stdin.write(name.encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return None, "crash"
        if not self.ready:  # the interpreter's start-up does not count against the case
            ready, failure = self._read_line(time.monotonic() + 60.0)
            if failure is not None:
                return None, failure
            self.ready = True
        return self._read_line(time.monotonic() + timeout)

    def stderr_tail(self, limit=4000):
        """What the worker wrote to stderr while running its last case."""
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace")
        return text[text.rfind("== case "):][-limit:]

    def stop(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.process.kill()
                self.process.wait()
        self.selector.close()
        self.process.stdout.close()
        self.stderr.close()

    def kill(self):
        self.process.kill()
        self.process.wait()


def _worker_environment():
    import swiftcam
    env = dict(os.environ)
    package_root = str(Path(swiftcam.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # the cases are small; leave cores to others
    return env


def run_cases(names, jobs=2):
    """Run the named cases in worker processes; returns {name: result dict}."""
    scratch = tempfile.mkdtemp(prefix="swiftcam-cases-")
    try:
        return _run_cases(names, jobs, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # also what killed workers left behind


def _run_cases(names, jobs, scratch):
    environment = _worker_environment()
    environment["SWIFTCAM_CASE_TMP"] = scratch
    queue = list(names)
    queue.sort(key=lambda n: not CASES[n].isolated)  # the slow, isolated ones first
    lock = threading.Lock()
    results = {}

    def take():
        with lock:
            return queue.pop(0) if queue else None

    def lane():
        worker = None
        while True:
            name = take()
            if name is None:
                break
            spec = CASES[name]
            if spec.isolated and worker is not None:
                worker.stop()
                worker = None
            if worker is None:
                worker = _Worker(environment)
            result, failure = worker.ask(name, spec.timeout)
            if failure is not None:
                if failure == "hang":
                    worker.kill()
                returncode = worker.process.wait()
                result = {"name": name, "status": failure, "returncode": returncode,
                          "stderr": worker.stderr_tail()}
                worker.stop()
                worker = None
            elif spec.isolated:
                worker.stop()
                worker = None
            with lock:
                results[name] = result
        if worker is not None:
            worker.stop()

    threads = [threading.Thread(target=lane) for _ in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# ================================================================================================
# The tests
# ================================================================================================

try:
    import pytest
except ImportError:  # the worker does not need pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="module")
    def table(request):
        """Results of the cases selected in this session (all of them, or those -k picks)."""
        selected = [item.callspec.params["name"] for item in request.session.items
                    if getattr(item, "originalname", None) == "test_case"
                    and item.module.__name__ == __name__ and hasattr(item, "callspec")]
        return run_cases(selected or TABLE)

    TABLE = [name for name in CASES if name not in SELF_TESTS]

    def test_the_table_is_big_enough():
        assert len(TABLE) >= 40

    def test_supervisor_survives_a_crash_and_a_hang():
        results = run_cases(["selftest_segfault", "rank0", "selftest_hang", "rank1"])
        assert results["selftest_segfault"]["status"] == "crash"
        assert results["selftest_segfault"]["returncode"] == -11
        assert "Segmentation fault" in results["selftest_segfault"]["stderr"]
        assert results["selftest_hang"]["status"] == "hang"
        assert results["rank0"]["status"] == results["rank1"]["status"] == "raised"

    @pytest.mark.parametrize("name", TABLE)
    def test_case(table, name):
        spec = CASES[name]
        result = table[name]
        status = result["status"]
        if status == "crash":
            pytest.fail(f"{name}: the interpreter DIED (return code {result['returncode']}); "
                        f"stderr:\n{result['stderr']}", pytrace=False)
        if status == "hang":
            pytest.fail(f"{name}: no answer within {spec.timeout:.0f} s (a hang); stderr:\n"
                        f"{result['stderr']}", pytrace=False)
        if spec.works:
            assert status == "returned", (
                f"{name} should work, raised {result['type']}: {result['message']}\n"
                f"{result['traceback']}")
            return
        assert status == "raised", f"{name} should raise {spec.raises}, returned normally"
        assert result["type"] == spec.raises, (
            f"{name}: expected {spec.raises}, got {result['type']}: {result['message']}\n"
            f"{result['traceback']}")
        if spec.builtin is not None:
            assert f"builtins.{spec.builtin}" in result["mro"], (
                f"{name}: {result['type']} is not a {spec.builtin}: {result['mro']}")
        if spec.raises.startswith("swiftcam."):
            assert "swiftcam.errors.SwiftCAMError" in result["mro"]
        assert re.search(spec.match, result["message"], re.DOTALL), (
            f"{name}: message {result['message']!r} does not match {spec.match!r}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker_main()
    elif sys.argv[1:] == ["--list"]:
        print("\n".join(CASES))
    else:
        print(__doc__)
        sys.exit(2)
