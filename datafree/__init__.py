"""datafree: distill a trained teacher into a small student without the teacher's training data."""

__version__ = "0.1.0"

from datafree.errors import DatafreeError

__all__ = ["DatafreeError", "__version__"]
