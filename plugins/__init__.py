"""The built-in continual-learning strategies, each a :class:`neurosim.Plugin`; also made by name with
:func:`neurosim.create_plugin` (``"hlop"``, ``"gpm"``, ``"ewc"``, ``"si"``, ``"metaplasticity"``,
``"replay"``, ``"freeze"``)."""
from .ewc import EWC
from .freeze import Freeze
from .gpm import GPM
from .hlop import HLOP
from .metaplasticity import Metaplasticity
from .replay import Replay
from .si import SI

__all__ = ["EWC", "Freeze", "GPM", "HLOP", "Metaplasticity", "Replay", "SI"]
