"""MNotificatorAPI: every function the reference lists exists, answers a
wrong-context error outside the notificator and, in it, what a headless
notificator can do; none raises."""

from __future__ import annotations

import MNotificatorAPI
import pytest

from gateway import context, errors

FUNCTIONS = {
    "getMainDialog": (),
    "dispatcherSendCustomMessage": (1701, "render done"),
}


def test_the_module_offers_the_functions_the_reference_lists() -> None:
    assert set(MNotificatorAPI.__all__) == {"MUSTERERR", *FUNCTIONS}
    for name in FUNCTIONS:
        assert callable(getattr(MNotificatorAPI, name))


@pytest.mark.parametrize("where", ["console", "dispatcher", "renderclient"])
def test_other_contexts_get_a_wrong_context_error(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv(context.CONTEXT_VARIABLE, where)
    err, dialog = MNotificatorAPI.getMainDialog()
    assert (err.getErrorCode(), dialog) == (errors.kErrorWrongContext, "")
    assert where in err.getDescription()
    err = MNotificatorAPI.dispatcherSendCustomMessage(*FUNCTIONS["dispatcherSendCustomMessage"])
    assert err.getErrorCode() == errors.kErrorWrongContext
    assert "getMainDialog" in MNotificatorAPI.getMainDialog()[0].getDescription()


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
