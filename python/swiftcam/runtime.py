"""Process-wide runtime settings: the engine's thread count and the BLAS kernels it uses.

The engine splits each layer's work across its own threads and runs OpenBLAS (Debian's
library, not NumPy's bundled copy) single-threaded inside them, so the two never oversubscribe
the cores. NumPy's OpenBLAS has its own pool, which these functions do not touch.
"""

import operator

from . import _native
from .errors import InvalidInputError

__all__ = ["blas_core_name", "gemm_kernel", "set_num_threads", "get_num_threads", "MAX_THREADS"]

#: The largest thread count the engine accepts (swiftcam_set_num_threads).
MAX_THREADS = 4096


def blas_core_name():
    """The CPU kernel family OpenBLAS selected, e.g. ``"SkylakeX"`` or ``"Prescott"``.

    ``"Prescott"`` on a recent x86 CPU means the slow generic kernels: set the environment
    variable ``OPENBLAS_CORETYPE`` before importing swiftcam (it is set automatically to
    ``SkylakeX`` on CPUs with AVX-512 when unset).
    """
    return _native.blas_core_name()


def gemm_kernel():
    """What runs the convolutions' forward products: ``"swiftcam-avx512"`` or ``"openblas"``.

    ``"swiftcam-avx512"`` is swiftcam's own matrix-product kernel, on weights packed once at load
    time (on x86-64 CPUs with AVX-512); elsewhere, or when the environment variable
    ``SWIFTCAM_GEMM=openblas`` is set before the first model is loaded, OpenBLAS runs them. The
    backward pass always uses OpenBLAS. Both give the same results up to float rounding.
    """
    return _native.gemm_kernel_name()


def set_num_threads(n):
    """Set how many threads each engine call may use (process-wide), 1 to 4096.

    The default is OpenBLAS's default (``OPENBLAS_NUM_THREADS``, else the number of cores).
    At most one thread per core runs at once whatever the count; calls made at the same time
    from several Python threads share the cores instead of multiplying threads.
    """
    if isinstance(n, bool):
        raise TypeError("n must be an int")
    n = operator.index(n)
    if not 1 <= n <= MAX_THREADS:
        raise InvalidInputError(f"the number of threads must be between 1 and {MAX_THREADS}, "
                                f"got {n}")
    _native.set_num_threads(n)


def get_num_threads():
    """How many threads each engine call may use."""
    return _native.get_num_threads()
