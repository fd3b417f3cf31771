"""`muster-console` against a real dispatcher and agents (tests/e2e's fixtures)."""

from tests.e2e.conftest import (  # noqa: F401
    channel,
    dispatcher,
    jobs,
    nodes,
    pytest_runtest_makereport,
    start_agent,
)
