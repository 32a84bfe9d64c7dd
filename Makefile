# swiftcam: set-up, build, tests, demo, fixtures and benchmarks.
#   make demo   - installs what is missing, builds, explains the example images with the demo model
#   make test   - installs what is missing, builds, runs the Swift (XCTest) and Python (pytest) suites
# Dependencies: Debian packages (libopenblas-dev, python3-dev, pkg-config) and pip packages
# (numpy, pillow, pytest, wheel). Fixture generation needs torch in its own venv (.venv-torch).

PYTHON ?= python3
SWIFT ?= swift
TORCH_VENV ?= .venv-torch
OUT ?= out

# Debian's OpenBLAS 0.3.21 misdetects recent Intel cores and picks slow kernels; on a CPU with
# AVX-512 ask for the SkylakeX kernels (elsewhere that would crash, so only then). A value the
# user set wins.
ifeq ($(origin OPENBLAS_CORETYPE), undefined)
  ifneq ($(shell grep -m1 -o -w avx512f /proc/cpuinfo 2>/dev/null),)
    export OPENBLAS_CORETYPE := SkylakeX
  endif
endif

.PHONY: all setup system-deps python-deps build demo test test-swift test-python test-live fixtures bench clean

all: build

setup: system-deps python-deps build

system-deps:
	@missing=""; \
	for pkg in libopenblas-dev python3-dev pkg-config; do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

python-deps:
	$(PYTHON) -m pip install -q --disable-pip-version-check "numpy>=1.23" "pillow>=9" "pytest>=7" wheel nbclient ipykernel nbformat

build:
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-build-isolation -e .

demo: setup
	$(PYTHON) -m swiftcam explain --examples --out $(OUT)

test: setup test-swift test-python

test-swift:
	$(SWIFT) test

test-python:
	$(PYTHON) -m pytest -q python/tests

# Live comparisons against torchvision / pytorch-grad-cam (in the torch venv; they skip elsewhere).
test-live: $(TORCH_VENV)/bin/python
	$(TORCH_VENV)/bin/pip install -q --no-build-isolation -e .
	$(TORCH_VENV)/bin/python -m pytest -q python/tests

$(TORCH_VENV)/bin/python:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install -q torch torchvision grad-cam==1.5.7 safetensors numpy pillow pytest wheel

fixtures: $(TORCH_VENV)/bin/python
	$(TORCH_VENV)/bin/python tools/generate_fixtures.py

bench: $(TORCH_VENV)/bin/python
	$(TORCH_VENV)/bin/pip install -q --no-build-isolation -e .
	$(TORCH_VENV)/bin/python benchmarks/bench.py

clean:
	rm -rf .build build python/swiftcam/*.so $(OUT)
