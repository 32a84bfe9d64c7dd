"""Shared fixtures: the reference cases in Tests/Fixtures/<case>/ and small helpers.

The reference files are written by tools/generate_fixtures.py (torch + pytorch-grad-cam); the
tests read them with swiftcam's own pure-NumPy safetensors reader. A missing file fails the
test with a hint to regenerate, it never skips. SWIFTCAM_FIXTURES overrides the directory.
"""

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

import swiftcam
from swiftcam import _safetensors

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("SWIFTCAM_FIXTURES", REPO_ROOT / "Tests" / "Fixtures"))
CASES = ("basic", "bottleneck", "grouped", "wide")
REGENERATE_HINT = ("run `make fixtures` (or `.venv-torch/bin/python tools/generate_fixtures.py`"
                   ") from the repository root")


class Case:
    """One fixture case: its files, meta.json and (read lazily) its tensors."""

    def __init__(self, name):
        self.name = name
        self.directory = FIXTURES / name
        self.weights_path = self.directory / "weights.safetensors"
        self.expected_path = self.directory / "expected.safetensors"
        self.meta_path = self.directory / "meta.json"
        for path in (self.weights_path, self.expected_path, self.meta_path):
            if not path.is_file():
                pytest.fail(f"reference fixture {path} is missing: {REGENERATE_HINT}",
                            pytrace=False)
        with open(self.meta_path, encoding="utf-8") as file:
            self.meta = json.load(file)

    @functools.cached_property
    def expected(self):
        return _safetensors.read(self.expected_path)

    @functools.cached_property
    def weights(self):
        return _safetensors.read(self.weights_path)

    @property
    def input(self):
        return self.expected["input"]

    def tensor(self, key):
        try:
            return self.expected[key]
        except KeyError:
            pytest.fail(f"{self.expected_path} has no tensor {key!r}; the fixture is stale: "
                        f"{REGENERATE_HINT}", pytrace=False)

    def __repr__(self):
        return f"Case({self.name!r})"


@functools.lru_cache(maxsize=None)
def get_case(name):
    return Case(name)


@functools.lru_cache(maxsize=None)
def get_model(name):
    """A model shared by the tests that do not close it."""
    return swiftcam.load(get_case(name).weights_path)


def meta_entries(meta_key, prefix):
    """pytest params (case name, entry) for every entry of the meta.json list ``meta_key``
    (``cams``, ``extra_cams``, ``fullgrad_cams``) whose key starts with ``prefix``. A case
    without that list gives (name, None): the test fails inside, not at collection."""
    for name in CASES:
        try:
            entries = get_case(name).meta[meta_key]
        except BaseException:
            yield pytest.param(name, None, id=f"{name}-missing")
            continue
        for entry in entries:
            if entry["key"].startswith(prefix):
                yield pytest.param(name, entry, id=f"{name}-{entry['key'][len(prefix):]}")


TARGET_KINDS = {"class": swiftcam.ClassifierOutputTarget,
                "softmax": swiftcam.ClassifierOutputSoftmaxTarget}


def entry_targets(entry):
    """The swiftcam targets of a fixture entry's ``targets`` (None for kind ``none``)."""
    kind = entry["targets"]["kind"]
    if kind == "none":
        return None
    return [TARGET_KINDS[kind](c) for c in entry["targets"]["classes"]]


@pytest.fixture(params=CASES)
def case(request):
    return get_case(request.param)


@pytest.fixture
def case_model(case):
    return get_model(case.name)


@pytest.fixture
def basic():
    return get_case("basic")


@pytest.fixture
def basic_model():
    return get_model("basic")


@pytest.fixture
def fresh_model(basic):
    """A model of its own, closed after the test."""
    model = swiftcam.load(basic.weights_path)
    yield model
    model.close()


def max_relative_error(actual, expected):
    """max |actual - expected| / max |expected| (0 when expected is all zero and equal)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = np.abs(expected).max()
    difference = np.abs(actual - expected).max()
    return difference / scale if scale > 0 else difference
