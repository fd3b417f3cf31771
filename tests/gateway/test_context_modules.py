"""The context modules MInstanceAPI and MNotificatorAPI: every function the
reference lists exists and answers a wrong-context error, never an exception,
outside its own context; in the notificator context, what a headless
notificator can do (MInstanceAPI in its own context: test_render_client.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import MInstanceAPI
import MNotificatorAPI
import pytest

from muster_gateway import context, errors

FUNCTIONS = {
    "getMainDialog": (),
    "dispatcherSendCustomMessage": (1701, "render done"),
}


def test_the_module_offers_the_functions_the_reference_lists() -> None:
    assert set(MNotificatorAPI.__all__) == {"MUSTERERR", *FUNCTIONS}
    for name in FUNCTIONS:
        assert callable(getattr(MNotificatorAPI, name))


# Every function: (call, its own context, its results besides the MUSTERERR when refused).
CALLS: list[tuple[Callable[[], Any], str, tuple[Any, ...]]] = [
    (MInstanceAPI.getRunningInstances, "renderclient", (0,)),
    (lambda: MInstanceAPI.getInstanceStatus(0), "renderclient", (0,)),
    (MNotificatorAPI.getMainDialog, "notificator", ("",)),
    (lambda: MNotificatorAPI.dispatcherSendCustomMessage(1701, "render done"), "notificator", ()),
]


@pytest.mark.parametrize(
    ("call", "own", "empty", "where"),
    [(*c, where) for c in CALLS for where in context.CONTEXTS if where != c[1]],
)
def test_other_contexts_get_a_wrong_context_error_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
    call: Callable[[], Any],
    own: str,
    empty: tuple[Any, ...],
    where: str,
) -> None:
    monkeypatch.setenv(context.CONTEXT_VARIABLE, where)
    result = call()
    err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    assert (err.getErrorCode(), rest) == (errors.kErrorWrongContext, empty)
    assert where in err.getDescription() and own in err.getDescription()


def test_in_the_notificator_context_the_headless_answers_are_documented_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(context.CONTEXT_VARIABLE, "notificator")
    err, dialog = MNotificatorAPI.getMainDialog()
    assert (err.getErrorCode(), dialog) == (errors.kErrorFailedPrecondition, "")
    assert "no desktop UI" in err.getDescription()
    err = MNotificatorAPI.dispatcherSendCustomMessage(1701, "render done")
    assert err.getErrorCode() == errors.kErrorNotImplemented
    assert "no receiver" in err.getDescription()
    for wrong in (("1701", "x"), (True, "x"), (1701, 5)):
        err = MNotificatorAPI.dispatcherSendCustomMessage(*wrong)
        assert err.getErrorCode() == errors.kErrorBadArguments, wrong
