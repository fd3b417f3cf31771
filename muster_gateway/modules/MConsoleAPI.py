"""Muster's `MConsoleAPI`: the console's view of the dispatcher's functions.

A console script reaches the dispatcher through the same network API, so
this module offers the same functions as MDispatcherAPI.
"""

from muster_gateway.api import *  # noqa: F403
from muster_gateway.api import FUNCTIONS, __all__  # noqa: F401
