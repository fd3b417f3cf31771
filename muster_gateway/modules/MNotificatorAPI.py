"""Muster's `MNotificatorAPI`: what code in the notificator may ask of it.

Muster runs it in its Notificator applet (runningContext() == "notificator"),
in a template's onCustomMessage. Elsewhere every function returns a
kErrorWrongContext MUSTERERR and empty results. `muster-notificator`
(muster_notificator/) is a headless program, so in the notificator context:

- getMainDialog() -> (kErrorFailedPrecondition, ""): there is no desktop UI,
  no Qt main dialog to parent widgets to;
- dispatcherSendCustomMessage(templateId, message) ->
  kErrorNotImplemented: the dispatcher has no receiver for a notificator's
  messages (its contract carries messages to notificators, not from them).

docs/api-compatibility.md lists them. No function raises.
"""

from typing import Any

from muster_gateway import errors
from muster_gateway.context import running_context
from muster_gateway.errors import MUSTERERR


def _wrong_context(function: str) -> MUSTERERR | None:
    context = running_context()
    if context == "notificator":
        return None
    return MUSTERERR(
        errors.kErrorWrongContext,
        f"{function}: MNotificatorAPI works only in the notificator context, not {context!r}",
    )


def getMainDialog() -> tuple[MUSTERERR, str]:
    """The address of the notificator's Qt main dialog, as a string; "" with
    an error here: muster-notificator has no desktop UI."""
    refused = _wrong_context("getMainDialog")
    if refused is not None:
        return refused, ""
    return MUSTERERR(
        errors.kErrorFailedPrecondition,
        "getMainDialog: no desktop UI: muster-notificator runs headless (no Qt main dialog)",
    ), ""


def dispatcherSendCustomMessage(templateId: Any, message: Any) -> MUSTERERR:
    """A message for the dispatcher's template `templateId` (its onCustomMessage)."""
    refused = _wrong_context("dispatcherSendCustomMessage")
    if refused is not None:
        return refused
    if isinstance(templateId, bool) or not isinstance(templateId, int):
        return MUSTERERR(
            errors.kErrorBadArguments,
            f"dispatcherSendCustomMessage: templateId must be an int, not"
            f" {type(templateId).__name__}",
        )
    if not isinstance(message, str):
        return MUSTERERR(
            errors.kErrorBadArguments,
            f"dispatcherSendCustomMessage: message must be a string, not {type(message).__name__}",
        )
    return MUSTERERR(
        errors.kErrorNotImplemented,
        "dispatcherSendCustomMessage: the dispatcher has no receiver for messages from"
        " notificators (docs/api-compatibility.md)",
    )


__all__ = ["MUSTERERR", "dispatcherSendCustomMessage", "getMainDialog"]
