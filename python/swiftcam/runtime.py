"""Process-wide runtime settings: OpenBLAS's thread pool and the kernels it selected.

Debian's OpenBLAS (used by the engine) and NumPy's bundled OpenBLAS are separate libraries with
separate thread pools; these functions control only the engine's.
"""

import operator

from . import _native
from .errors import InvalidInputError

__all__ = ["blas_core_name", "set_num_threads", "get_num_threads", "MAX_THREADS"]

#: The largest thread count the engine accepts (swiftcam_set_num_threads).
MAX_THREADS = 4096


def blas_core_name():
    """The CPU kernel family OpenBLAS selected, e.g. ``"SkylakeX"`` or ``"Prescott"``.

    ``"Prescott"`` on a recent x86 CPU means the slow generic kernels: set the environment
    variable ``OPENBLAS_CORETYPE`` before importing swiftcam (it is set automatically to
    ``SkylakeX`` on CPUs with AVX-512 when unset).
    """
    return _native.blas_core_name()


def set_num_threads(n):
    """Set the number of threads of the engine's OpenBLAS pool (process-wide), 1 to 4096."""
    if isinstance(n, bool):
        raise TypeError("n must be an int")
    n = operator.index(n)
    if not 1 <= n <= MAX_THREADS:
        raise InvalidInputError(f"the number of threads must be between 1 and {MAX_THREADS}, "
                                f"got {n}")
    _native.set_num_threads(n)


def get_num_threads():
    """The number of threads of the engine's OpenBLAS pool."""
    return _native.get_num_threads()
