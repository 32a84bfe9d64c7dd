"""OpenBLAS configuration on import, and the runtime functions."""

import os
import subprocess
import sys

import pytest

import swiftcam
from swiftcam import _blas_env
from swiftcam.errors import InvalidInputError

AVX512_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n\n" * 2
AVX2_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n\n"


def _cpuinfo(tmp_path, text):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


def test_sets_skylakex_on_avx512(tmp_path):
    environ = {}
    value = _blas_env.configure_openblas_coretype(environ, _cpuinfo(tmp_path, AVX512_CPUINFO))
    assert value == environ["OPENBLAS_CORETYPE"] == "SkylakeX"


def test_leaves_cpus_without_avx512_alone(tmp_path):
    environ = {}
    assert _blas_env.configure_openblas_coretype(environ,
                                                 _cpuinfo(tmp_path, AVX2_CPUINFO)) is None
    assert environ == {}


def test_avx512_must_be_a_whole_flag(tmp_path):
    text = "flags\t\t: fpu avx512fp16_notreally\n"
    assert not _blas_env.cpu_has_avx512f(_cpuinfo(tmp_path, text))


def test_respects_user_value(tmp_path):
    environ = {"OPENBLAS_CORETYPE": "Haswell"}
    assert _blas_env.configure_openblas_coretype(environ,
                                                 _cpuinfo(tmp_path, AVX512_CPUINFO)) is None
    assert environ["OPENBLAS_CORETYPE"] == "Haswell"


def test_unreadable_cpuinfo(tmp_path):
    assert _blas_env.configure_openblas_coretype({}, str(tmp_path / "missing")) is None


def _core_name_in_subprocess(environ):
    code = "import swiftcam, os; print(swiftcam.blas_core_name(), " \
           "os.environ.get('OPENBLAS_CORETYPE'))"
    package_parent = os.path.dirname(os.path.dirname(swiftcam.__file__))
    environ = dict(environ, PYTHONPATH=os.pathsep.join(
        [package_parent] + [p for p in [environ.get("PYTHONPATH")] if p]))
    result = subprocess.run([sys.executable, "-c", code], env=environ, check=True,
                            stdout=subprocess.PIPE, text=True)
    return result.stdout.split()


@pytest.mark.skipif(not _blas_env.cpu_has_avx512f(), reason="needs an AVX-512 CPU")
def test_import_selects_skylakex_kernels():
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    core, variable = _core_name_in_subprocess(environ)
    assert variable == "SkylakeX"
    assert core.lower().startswith("skylakex")


def test_import_respects_user_choice():
    environ = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    core, variable = _core_name_in_subprocess(environ)
    assert variable == "Haswell"
    assert core.lower() == "haswell"


def test_blas_core_name_is_reported():
    assert isinstance(swiftcam.blas_core_name(), str) and swiftcam.blas_core_name()


def test_num_threads_round_trip():
    original = swiftcam.get_num_threads()
    try:
        swiftcam.set_num_threads(1)
        assert swiftcam.get_num_threads() == 1
    finally:
        swiftcam.set_num_threads(original)
    assert swiftcam.get_num_threads() == original


@pytest.mark.parametrize("n", [0, -3, 4097])
def test_set_num_threads_validates(n):
    with pytest.raises(InvalidInputError, match="between 1 and 4096"):
        swiftcam.set_num_threads(n)


def test_set_num_threads_type():
    with pytest.raises(TypeError):
        swiftcam.set_num_threads(2.5)


# The two product paths: swiftcam's own GEMM kernel (on AVX-512 CPUs) and OpenBLAS.
_GEMM_RUN = """
import sys, numpy as np, swiftcam
from swiftcam.utils.image import load_image, preprocess_image
model = swiftcam.load_demo_model()
images = [preprocess_image(load_image(e["path"], size=160)) for e in swiftcam.demo.example_images()[:3]]
x = np.concatenate(images)
with swiftcam.GradCAM(model=model, target_layers=["layer3", "layer4"]) as cam:
    maps = cam(input_tensor=x)
np.savez(sys.argv[1], kernel=swiftcam.gemm_kernel(), logits=model(x), maps=maps)
"""


def _gemm_run(tmp_path, gemm):
    environ = {k: v for k, v in os.environ.items() if k != "SWIFTCAM_GEMM"}
    if gemm is not None:
        environ["SWIFTCAM_GEMM"] = gemm
    package_parent = os.path.dirname(os.path.dirname(swiftcam.__file__))
    environ["PYTHONPATH"] = os.pathsep.join(
        [package_parent] + [p for p in [environ.get("PYTHONPATH")] if p])
    out = tmp_path / f"{gemm}.npz"
    subprocess.run([sys.executable, "-c", _GEMM_RUN, str(out)], env=environ, check=True)
    import numpy as np
    return dict(np.load(out))


def test_gemm_kernel_is_reported():
    expected = "swiftcam-avx512" if _blas_env.cpu_has_avx512f() else "openblas"
    if os.environ.get("SWIFTCAM_GEMM", "").lower() == "openblas":
        expected = "openblas"
    assert swiftcam.gemm_kernel() == expected


@pytest.mark.skipif(not _blas_env.cpu_has_avx512f(), reason="needs an AVX-512 CPU")
def test_gemm_paths_agree(tmp_path):
    """The demo model's logits and GradCAM maps on three example images, once on swiftcam's
    kernel and once with SWIFTCAM_GEMM=openblas: the same up to float rounding. Tolerances: 1e-5
    of the largest logit, and the CAM tolerance (1e-5 absolute on maps in [0, 1]); each path sums
    the same products in another order, ~1e-6 apart, while a wrong tile is O(1) off."""
    import numpy as np
    own, blas = _gemm_run(tmp_path, None), _gemm_run(tmp_path, "openblas")
    assert str(own["kernel"]) == "swiftcam-avx512" and str(blas["kernel"]) == "openblas"
    scale = np.abs(blas["logits"]).max()
    assert np.abs(own["logits"] - blas["logits"]).max() <= 1e-5 * scale
    assert np.abs(own["maps"] - blas["maps"]).max() <= 1e-5
    assert np.abs(own["maps"]).max() > 0.5  # real maps, not empty ones
