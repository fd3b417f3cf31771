"""Muster's builtin `muster` module: the running context and expression output."""

import sys

from muster_gateway.context import running_context


def runningContext() -> str:
    """ "console", "dispatcher", "renderclient" or "notificator"."""
    return running_context()


def expressionPrint(text: object) -> None:
    """Print a line to the context's output (the hook log, the console...)."""
    print(str(text), file=sys.stdout, flush=True)
