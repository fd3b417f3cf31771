"""Muster's `MNotificatorAPI`: what a notificator may ask of the dispatcher.

Works in the notificator (runningContext() == "notificator"); elsewhere it
returns a non-zero MUSTERERR saying so. The notificator program arrives with
the live clients issue (issue 7).
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
