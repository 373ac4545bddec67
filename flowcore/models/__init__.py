"""Models: transforms made of transforms."""

from .builder import SequenceBuilder
from .sequence import Inverse, SequenceINN

__all__ = ["Inverse", "SequenceBuilder", "SequenceINN"]
