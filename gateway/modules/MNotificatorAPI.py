"""Muster's `MNotificatorAPI`: what a notificator may ask of the dispatcher.

Works in the notificator (runningContext() == "notificator"); elsewhere it
returns a non-zero MUSTERERR saying so. `muster-notificator` (notificator/)
runs no scripts, so it offers them no connection: in the notificator context
the function answers kErrorNotImplemented.
"""

from gateway import errors
from gateway.context import running_context
from gateway.errors import MUSTERERR


def dispatcherSendCustomMessage(templateId: int, message: str) -> MUSTERERR:
    context = running_context()
    if context != "notificator":
        return MUSTERERR(
            errors.kErrorWrongContext,
            "dispatcherSendCustomMessage: MNotificatorAPI works only in the notificator"
            f" context, not {context!r}",
        )
    return MUSTERERR(
        errors.kErrorNotImplemented, "dispatcherSendCustomMessage: no notificator connection"
    )
