"""Muster's `MDispatcherAPI`: every function of the Dispatcher API.

    import MDispatcherAPI
    err, jobs = MDispatcherAPI.jobGetList()
    if err.getErrorCode() != 0:
        print("Function failed: " + err.getDescription())

The functions live in muster_gateway/api/, one module per group of Muster's
documentation (muster_gateway/api/__init__.py maps them); docs/api-compatibility.md
lists them with the RPC behind each.
"""

from muster_gateway.api import *  # noqa: F403
from muster_gateway.api import FUNCTIONS, __all__  # noqa: F401
