"""Muster's `MDispatcherAPI`: every function of the Dispatcher API.

    import MDispatcherAPI
    err, jobs = MDispatcherAPI.jobGetList()
    if err.getErrorCode() != 0:
        print("Function failed: " + err.getDescription())

The functions live in gateway/dispatcher_api.py; docs/api-compatibility.md
lists them with the RPC behind each.
"""

from gateway.dispatcher_api import *  # noqa: F403
from gateway.dispatcher_api import FUNCTIONS, __all__  # noqa: F401
