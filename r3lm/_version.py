"""The package version, on the ground floor so that a bundle can record it without importing the package."""

__version__ = "0.1.0"
