"""datafree: distill a trained teacher into a small student without the teacher's training data.

The library calls, one per job, are in :mod:`datafree.api` (``import datafree.api as df``;
``df.synthesize``, ``df.distill``, ``df.condense``, ``df.evaluate_set``, ``df.audit``, ...). They are
not re-exported here: ``datafree.condense``, ``datafree.audit`` and ``datafree.quantize`` are
subpackages, and a function of the same name would be replaced by the module once it is imported.
"""

__version__ = "0.1.0"

from datafree.errors import DatafreeError

__all__ = ["DatafreeError", "__version__"]
