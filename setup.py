"""Build script: compiles the Swift engine with SwiftPM, then the CPython extension.

``build_ext`` runs ``swift build -c release -Xswiftc -static-stdlib`` (the resulting
libswiftcam.so needs no Swift runtime), links ``swiftcam._native`` against it with an
``$ORIGIN`` rpath, and copies libswiftcam.so next to the extension, in the build directory and,
for ``--inplace`` and editable installs, into python/swiftcam/.

Environment:
    SWIFT                   the swift driver to use (default: ``swift`` on PATH)
    SWIFTCAM_SCRATCH_PATH   SwiftPM's build directory (default: .build in this directory)
    SWIFTCAM_SWIFT_FLAGS    extra arguments for ``swift build``, split on whitespace

Metadata lives in pyproject.toml.
"""

import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:  # setuptools >= 59; printed as "error: <message>" without a traceback
    from setuptools.errors import BaseError
except ImportError:  # pragma: no cover
    from distutils.errors import DistutilsError as BaseError

ROOT = os.path.dirname(os.path.abspath(__file__))
PRODUCT = "swiftcam"
LIBRARY_FILE = f"lib{PRODUCT}.dylib" if sys.platform == "darwin" else f"lib{PRODUCT}.so"
HEADER_DIR = os.path.join("Sources", "CSwiftCAM", "include")


class SwiftBuildError(BaseError):
    """The Swift toolchain is missing or ``swift build`` failed."""


def find_swift():
    """The swift driver: $SWIFT, else ``swift`` on PATH; a clear error when neither exists."""
    swift = os.environ.get("SWIFT")
    if swift:
        if not (os.path.isfile(swift) and os.access(swift, os.X_OK)) and not shutil.which(swift):
            raise SwiftBuildError(f"SWIFT={swift!r} is not an executable swift driver")
        return shutil.which(swift) or swift
    swift = shutil.which("swift")
    if swift is None:
        raise SwiftBuildError(
            "building swiftcam needs a Swift 6 toolchain, and `swift` is not on PATH: install "
            "Swift 6 and put its usr/bin on PATH, or set SWIFT=/path/to/usr/bin/swift")
    return swift


def swift_build_command(swift):
    """``swift build`` for the release product, honouring SWIFTCAM_SCRATCH_PATH/_SWIFT_FLAGS."""
    command = [swift, "build", "--package-path", ROOT, "-c", "release",
               "-Xswiftc", "-static-stdlib", "--product", PRODUCT]
    scratch = os.environ.get("SWIFTCAM_SCRATCH_PATH")
    if scratch:
        command += ["--scratch-path", os.path.abspath(scratch)]
    command += shlex.split(os.environ.get("SWIFTCAM_SWIFT_FLAGS", ""))
    return command


def build_swift_library():
    """Run ``swift build`` and return the directory holding the built library."""
    swift = find_swift()
    command = swift_build_command(swift)
    print("running", " ".join(shlex.quote(part) for part in command), flush=True)
    try:
        subprocess.run(command, cwd=ROOT, check=True)
        bin_path = subprocess.run(command + ["--show-bin-path"], cwd=ROOT,
                                  check=True, stdout=subprocess.PIPE, text=True).stdout
    except subprocess.CalledProcessError as error:
        raise SwiftBuildError(f"swift build failed with exit status {error.returncode}; see "
                              "the compiler output above") from error
    library_dir = bin_path.strip().splitlines()[-1]
    if not os.path.isfile(os.path.join(library_dir, LIBRARY_FILE)):
        raise SwiftBuildError(f"swift build succeeded but {LIBRARY_FILE} is not in "
                              f"{library_dir}")
    return library_dir


def _atomic_copy(source, destination):
    """Copy to a temporary name and rename over ``destination``: processes that mapped the old
    file keep their (unlinked) copy instead of seeing it change under them."""
    temporary = f"{destination}.tmp-{os.getpid()}"
    shutil.copy2(source, temporary)
    os.replace(temporary, destination)


class SwiftBuildExt(build_ext):
    """build_ext that builds the Swift library first and ships it next to the extension."""

    def run(self):
        library_dir = build_swift_library()
        self._swift_library = os.path.join(library_dir, LIBRARY_FILE)
        for ext in self.extensions:
            if library_dir not in ext.library_dirs:
                ext.library_dirs.append(library_dir)
        # setuptools builds into build_lib, then copies the extension in place if asked.
        super().run()
        for regular, inplace in self._library_destinations():
            self._copy_library(regular)
            if self.inplace:
                self._copy_library(inplace)

    def _copy_library(self, destination):
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        _atomic_copy(self._swift_library, destination)
        print(f"copied {LIBRARY_FILE} -> {destination}", flush=True)

    def copy_file(self, infile, outfile, *args, **kwargs):
        """Copy the built extension in place atomically (setuptools would truncate and rewrite
        it, crashing any running process that has the old file mapped, e.g. a test run)."""
        if os.path.isdir(outfile):
            outfile = os.path.join(outfile, os.path.basename(infile))
        if self.dry_run:
            return outfile, 1
        _atomic_copy(infile, outfile)
        return outfile, 1

    def _library_destinations(self):
        """(build_lib path, in-place path) of libswiftcam.so for every extension's package."""
        build_py = self.get_finalized_command("build_py")
        seen = set()
        for ext in self.extensions:
            package = ".".join(self.get_ext_fullname(ext.name).split(".")[:-1])
            if package in seen:
                continue
            seen.add(package)
            regular = os.path.join(self.build_lib, *package.split("."), LIBRARY_FILE)
            inplace = os.path.join(build_py.get_package_dir(package), LIBRARY_FILE)
            yield regular, inplace

    def get_outputs(self):
        outputs = super().get_outputs()
        if self.inplace:
            return outputs + [inplace for _, inplace in self._library_destinations()]
        return outputs + [regular for regular, _ in self._library_destinations()]

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        if self.inplace:
            mapping.update(dict(self._library_destinations()))
        return mapping


native = Extension(
    "swiftcam._native",
    sources=["python/swiftcam/_native.c"],
    include_dirs=[HEADER_DIR],
    depends=[os.path.join(HEADER_DIR, "swiftcam.h")],
    libraries=[PRODUCT],
    extra_compile_args=["-Wall", "-Wextra", "-Wno-missing-field-initializers"],
    extra_link_args=["-Wl,-rpath,$ORIGIN"],
)

setup(ext_modules=[native], cmdclass={"build_ext": SwiftBuildExt})
