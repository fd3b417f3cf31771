"""`python -m muster_agent` and the `muster-agent` command."""

from __future__ import annotations

import sys


def run() -> int:
    """Start the agent with only what it uses loaded.

    Python's `ssl` module is kept out of the process: asyncio imports it when
    it can, and with it OpenSSL's libraries (about 4 MB resident of an idle
    agent's 42), yet nothing here uses it. gRPC's TLS is gRPC's own, and what
    the agent runs for a chunk, a system event or nodeRunPythonCode runs in a
    child process, which has `ssl` as usual. So is `hashlib`'s OpenSSL backend
    (`_hashlib`, libcrypto: 3.3 MB): `hashlib` then answers with Python's own
    md5, sha1, sha2, sha3 and blake2, which is all the agent hashes with.
    """
    for name in ("ssl", "_hashlib"):
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # `import` fails
    from muster_agent.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
