"""Invertible transforms."""

from .all_in_one import AllInOneBlock

__all__ = ["AllInOneBlock"]
