"""Choose OpenBLAS's CPU kernels before libopenblas is loaded.

Debian's OpenBLAS 0.3.21 does not recognise recent Intel cores and falls back to its
"Prescott" kernels, about 5x slower than the "SkylakeX" ones on a CPU with AVX-512. OpenBLAS
reads ``OPENBLAS_CORETYPE`` once, when the library is loaded, so this module must run before
``swiftcam._native`` (which links libswiftcam.so, which links libopenblas) is imported.

The variable is set only when the user has not set it and the CPU advertises ``avx512f``:
forcing SkylakeX kernels on a CPU without AVX-512 kills the process with SIGILL.
"""

import os

__all__ = ["configure_openblas_coretype", "cpu_has_avx512f"]

CORETYPE_VARIABLE = "OPENBLAS_CORETYPE"
AVX512_CORETYPE = "SkylakeX"


def cpu_has_avx512f(cpuinfo_path="/proc/cpuinfo"):
    """Return True when every CPU listed in ``cpuinfo_path`` has the ``avx512f`` flag.

    Returns False when the file cannot be read (not Linux) or lists no flags.
    """
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as file:
            flag_lines = [line for line in file if line.startswith("flags")]
    except OSError:
        return False
    if not flag_lines:
        return False
    return all("avx512f" in line.partition(":")[2].split() for line in flag_lines)


def configure_openblas_coretype(environ=None, cpuinfo_path="/proc/cpuinfo"):
    """Set ``OPENBLAS_CORETYPE=SkylakeX`` on an AVX-512 CPU unless the user chose a value.

    Parameters
    ----------
    environ : MutableMapping, optional
        The environment to update; ``os.environ`` (which also calls ``putenv``) by default.
    cpuinfo_path : str
        Where to read the CPU flags.

    Returns
    -------
    str or None
        The value this function set, or None when it left the environment alone.
    """
    if environ is None:
        environ = os.environ
    if CORETYPE_VARIABLE in environ:
        return None
    if not cpu_has_avx512f(cpuinfo_path):
        return None
    environ[CORETYPE_VARIABLE] = AVX512_CORETYPE
    return AVX512_CORETYPE
