"""`muster-console` against a real dispatcher and agents (tests/e2e's fixtures)."""

from tests.e2e.conftest import dispatcher, pytest_runtest_makereport, start_agent  # noqa: F401
