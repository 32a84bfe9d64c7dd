#!/usr/bin/env bash
# valgrind memcheck over the Swift engine (issue 8), two ways:
#
#  1. abi_exercise.c, a C program calling every function of the C ABI (successful and failing
#     paths, every CAM method) against libswiftcam.so: no interpreter, so every report is the
#     engine's (or OpenBLAS's). Fails on any memcheck error or any definitely/indirectly lost
#     block.
#  2. python3 under valgrind (PYTHONMALLOC=malloc) running a few loads (file and state dict),
#     forwards, CAMs and error paths through the C extension; only leak records whose stack
#     goes through libswiftcam.so or swiftcam's _native extension count.
#
# Usage: tools/stress/valgrind.sh [rounds]     (from the repository root; needs gcc, valgrind
# and the built extension: python3 -m pip install --no-build-isolation -e .)
# LIB=path/to/dir-with-libswiftcam.so overrides the library used by the C program.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ROUNDS="${1:-2}"
LIB="${LIB:-$ROOT/python/swiftcam}"
WEIGHTS="$ROOT/Tests/Fixtures/basic/weights.safetensors"
WORK="$(mktemp -d)"; [ -n "${KEEP:-}" ] && echo "logs in $WORK"
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1   # no thread pool: fewer false positives, faster
# The interpreter itself, not a launcher script (a pyenv shim would exec it out of valgrind).
PYTHON="$(python3 -c 'import sys; print(sys.executable)')"

echo "== 1. C ABI under memcheck ($ROUNDS rounds)"
gcc -O1 -g -Wall -Wextra -I "$ROOT/Sources/CSwiftCAM/include" "$ROOT/tools/stress/abi_exercise.c" \
    -L "$LIB" -lswiftcam -Wl,-rpath,"$LIB" -o "$WORK/abi_exercise"
status=0
valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=3 --num-callers=40 \
    --log-file="$WORK/abi.log" "$WORK/abi_exercise" "$WEIGHTS" "$ROUNDS" || status=$?
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable" "$WORK/abi.log" \
    | sed 's/^==[0-9]*== */   /'
if [ "$status" -ne 0 ]; then
    echo "FAILED (status $status); the full report:"; cat "$WORK/abi.log"; exit 1
fi

echo "== 2. Python extension under memcheck"
cat > "$WORK/exercise.py" <<'PY'
import sys
import numpy as np
import swiftcam
from swiftcam import _safetensors
path = sys.argv[1]
state = dict(_safetensors.read(path))
x = np.random.default_rng(0).standard_normal((2, 3, 33, 29), dtype=np.float32)
for source in (path, state):
    model = swiftcam.load(source)
    model(x)
    model.activations(x, ["layer1", "layer4"])
    model.gradients(x, [1, 2], ["layer3"])
    for method in ("GradCAM", "GradCAMPlusPlus", "EigenCAM", "LayerCAM"):
        getattr(swiftcam, method)(model, ["layer3", "layer4"])(x, eigen_smooth=True)
    swiftcam.GradCAM(model, "layer4").top_k(x, k=3)
    for bad in (lambda: model(x[:, :2]), lambda: model(x[0]),
                lambda: swiftcam.GradCAM(model, "layer4")(x, [99, 1])):
        try:
            bad()
        except swiftcam.SwiftCAMError:
            pass
    model.close()
try:
    swiftcam.load({"fc.weight": np.zeros((2, 2), np.float32)})
except swiftcam.SwiftCAMError:
    pass
print("exercise.py done")
PY
# valgrind 3.19 has no AVX-512: keep swiftcam from selecting OpenBLAS's SkylakeX kernels.
OPENBLAS_CORETYPE=Haswell PYTHONMALLOC=malloc valgrind --leak-check=full --show-leak-kinds=definite,indirect \
    --num-callers=40 --log-file="$WORK/python.log" \
    "$PYTHON" "$WORK/exercise.py" "$WEIGHTS"
python3 - "$WORK/python.log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
records = re.split(r"\n==\d+== \n", text)
ours = [r for r in records if re.search(r"are (definitely|indirectly) lost", r)
        and re.search(r"libswiftcam|_native\.c|_native\.cpython|SwiftCAM", r)]
errors = [r for r in records if re.search(r"Invalid (read|write|free)|uninitialised|"
                                          r"Mismatched free|overlap", r)
          and re.search(r"libswiftcam|_native\.c|_native\.cpython|SwiftCAM", r)]
summary = re.findall(r"ERROR SUMMARY: .*|definitely lost: .*|indirectly lost: .*", text)
if not summary:
    sys.exit("no valgrind summary in the log: did the interpreter run under valgrind?")
print("   whole process (CPython and NumPy included):", "; ".join(summary))
print(f"   records involving libswiftcam/_native: {len(ours)} leak(s), {len(errors)} error(s)")
for r in ours + errors:
    print(re.sub(r"==\d+== ", "   ", r))
sys.exit(1 if ours or errors else 0)
PY
echo "valgrind: no leak and no memory error in the engine or the extension"
