#!/usr/bin/env python3
"""A fuzz target that misbehaves on purpose, to check harness.py itself (test_fuzz_short.py).

Input = one byte b from the seeded generator: b < 3 segfaults (as a crash in the engine
would), b == 3 sleeps (a hang), b == 4 raises KeyError (an unexpected exception), b == 5 raises
swiftcam.FileFormatError (an expected error); anything else succeeds.
"""

import ctypes
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def outcome(byte):
    return ("crash" if byte < 3 else "hang" if byte == 3 else "unexpected" if byte == 4
            else "expected" if byte == 5 else "ok")


class SelfTestTarget:
    name = "selftest"
    suffix = ".bin"
    description = __doc__.split("\n\n")[0]

    def seeds(self):
        return [("byte", b"\x00")]

    def generate(self, rng):
        return bytes([rng.randrange(256)])

    def mutate(self, rng, data):
        return self.generate(rng)

    def execute(self, path):
        byte = Path(path).read_bytes()[0]
        kind = outcome(byte)
        if kind == "crash":
            ctypes.string_at(0)
        elif kind == "hang":
            time.sleep(3600)
        elif kind == "unexpected":
            raise KeyError("selftest")
        elif kind == "expected":
            import swiftcam
            raise swiftcam.FileFormatError("selftest")


TARGET = SelfTestTarget()

if __name__ == "__main__":
    sys.exit(harness.main(TARGET, str(Path(__file__).resolve())))
