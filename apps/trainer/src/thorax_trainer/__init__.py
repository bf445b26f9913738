"""Thorax trainer: trains the chest X-ray classifier and exports it in the Thorax model contract."""

__version__ = "0.1.0"
