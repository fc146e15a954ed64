"""The package version: a leaf every stage may import (the package root is a facade that imports the stages)."""

__version__ = "0.1.0"
