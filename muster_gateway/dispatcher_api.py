"""The MDispatcherAPI functions under their former home: they live in muster_gateway/api/.

Kept because an editable install copies muster_gateway/modules/MDispatcherAPI.py and
MConsoleAPI.py into site-packages (pyproject.toml's force-include), and copies
made before the split import this module; new code imports `muster_gateway.api`.
"""

from muster_gateway.api import *  # noqa: F403
from muster_gateway.api import FUNCTIONS, __all__  # noqa: F401
