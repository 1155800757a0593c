"""Dataset condensation: tiny synthetic transfer sets that train a model almost as well as the data.

Methods (``datafree condense --method``): ``random`` and ``herding`` baselines, ``dc`` and ``dsa``
(gradient matching), ``dm`` (distribution matching), ``mtt`` (trajectory matching) and
``teacher`` (recovered from a teacher's BatchNorm statistics alone). Every result is a transfer
set of ``kind: condensed``; :func:`evaluate_set` is the evaluation protocol.
"""

from datafree.condense.baselines import HerdingConfig
from datafree.condense.config import CondenseConfig
from datafree.condense.dc import DCConfig
from datafree.condense.evaluate import EvalProtocol, evaluate_set
from datafree.condense.methods import DEFAULTS, METHODS, CondenseMethod, method_config, register
from datafree.condense.mtt import MTTConfig
from datafree.condense.real import ClassPool
from datafree.condense.run import condense_set
from datafree.condense.teacher_only import TeacherConfig

__all__ = ["DEFAULTS", "METHODS", "ClassPool", "CondenseConfig", "CondenseMethod", "DCConfig", "EvalProtocol",
           "HerdingConfig", "MTTConfig", "TeacherConfig", "condense_set", "evaluate_set", "method_config", "register"]
