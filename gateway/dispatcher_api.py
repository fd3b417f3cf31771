"""The MDispatcherAPI functions under their former home: they live in gateway/api/.

Kept because an editable install copies gateway/modules/MDispatcherAPI.py and
MConsoleAPI.py into site-packages (pyproject.toml's force-include), and copies
made before the split import this module; new code imports `gateway.api`.
"""

from gateway.api import *  # noqa: F403
from gateway.api import FUNCTIONS, __all__  # noqa: F401
