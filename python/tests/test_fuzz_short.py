"""Short, seeded fuzz runs for CI (issue 8); the long runs and their results: tools/fuzz/README.md.

Each run goes through tools/fuzz/harness.py: the inputs execute in a child interpreter under a
supervisor, so a crash or a hang in the engine fails the test with the saved input and the
command that reproduces it, instead of killing pytest. The inputs are a pure function of the
seed, so a failure here reproduces exactly:

    python3 tools/fuzz/fuzz_safetensors.py --seed 8 --reproduce <index> --out input.safetensors
    python3 tools/fuzz/fuzz_safetensors.py --replay input.safetensors
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import swiftcam

REPO_ROOT = Path(__file__).resolve().parents[2]
FUZZ = REPO_ROOT / "tools" / "fuzz"
SEED = 8


def _environment():
    environment = dict(os.environ)
    package_root = str(Path(swiftcam.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, environment.get("PYTHONPATH")) if p)
    return environment


def _fuzz(script, out, runs, seed=SEED, timeout=10.0):
    command = [sys.executable, str(FUZZ / script), "--runs", str(runs), "--seed", str(seed),
               "--timeout", str(timeout), "--out", str(out), "--memory-limit-mb", "3072"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=_environment(), cwd=REPO_ROOT)
    summary_path = Path(out) / "summary.json"
    assert summary_path.is_file(), f"the fuzzer did not finish:\n{done.stdout}\n{done.stderr}"
    return json.loads(summary_path.read_text()), done


def _failures(summary, out):
    """Text describing every crash, hang and unexpected exception, with its saved report."""
    lines = []
    for name in sorted(os.listdir(out)):
        if name.endswith(".txt") and name.split("-")[0] in ("crash", "hang", "unexpected"):
            lines.append(f"--- {name}\n{(Path(out) / name).read_text()[:1500]}")
    return "\n".join(lines)


def _check(summary, out, runs):
    assert summary["executions"] == runs
    bad = summary["crashes"] or summary["hangs"] or summary["unexpected_exceptions"]
    assert not bad, (f"{len(summary['crashes'])} crash(es), {len(summary['hangs'])} hang(s), "
                     f"{summary['unexpected_exceptions']} unexpected exception(s):\n"
                     + _failures(summary, out))
    # The run must reach both sides: files that load (and run) and files that are refused.
    assert summary["loaded_ok"] > 0 and summary["expected_errors"] > 0, summary


def test_safetensors_fuzz_short(tmp_path):
    summary, _ = _fuzz("fuzz_safetensors.py", tmp_path, runs=300)
    _check(summary, tmp_path, 300)
    assert summary["expected_by_class"].get("FileFormatError", 0) > 0


def test_pth_fuzz_short(tmp_path):
    pytest.importorskip("swiftcam.pth")
    summary, _ = _fuzz("fuzz_pth.py", tmp_path, runs=300)
    _check(summary, tmp_path, 300)


def test_harness_records_crashes_hangs_and_unexpected_errors(tmp_path):
    """The supervisor itself: a target that segfaults, hangs and raises on known inputs."""
    sys.path.insert(0, str(FUZZ))
    try:
        import harness
        import selftest
    finally:
        sys.path.remove(str(FUZZ))
    runs = 130
    kinds = [selftest.outcome(selftest.TARGET.generate(harness.input_rng(1, i))[0])
             for i in range(runs)]
    expected = {kind: [i for i, k in enumerate(kinds) if k == kind]
                for kind in ("crash", "hang", "unexpected", "expected", "ok")}
    assert expected["crash"] and expected["hang"] and expected["unexpected"]
    summary, done = _fuzz("selftest.py", tmp_path, runs=runs, seed=1, timeout=1.0)
    assert summary["crashes"] == expected["crash"], done.stdout
    assert summary["hangs"] == expected["hang"]
    assert summary["unexpected_exceptions"] == len(expected["unexpected"])
    assert summary["expected_errors"] == len(expected["expected"])
    assert summary["loaded_ok"] == len(expected["ok"])
    assert summary["executions"] == runs
    first_crash = expected["crash"][0]
    report = (tmp_path / f"crash-{first_crash}.txt").read_text()
    assert "Segmentation fault" in report and f"--reproduce {first_crash}" in report
    assert (tmp_path / f"crash-{first_crash}.bin").read_bytes() == selftest.TARGET.generate(
        harness.input_rng(1, first_crash))
