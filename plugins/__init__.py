"""The built-in continual-learning strategies, each a :class:`neurosim.Plugin`; also made by name with
:func:`neurosim.create_plugin` (``"hlop"``, ``"ewc"``, ``"si"``, ``"metaplasticity"``, ``"replay"``)."""
from .ewc import EWC
from .hlop import HLOP
from .metaplasticity import Metaplasticity
from .replay import Replay
from .si import SI

__all__ = ["EWC", "HLOP", "Metaplasticity", "Replay", "SI"]
