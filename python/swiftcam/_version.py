"""The package version, in one place (read by pyproject.toml without importing swiftcam)."""

__version__ = "0.1.0"
