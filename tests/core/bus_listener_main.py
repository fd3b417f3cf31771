"""A bus listener in its own process, for the cross-process bus tests.

Usage: python -m tests.core.bus_listener_main DATABASE_URL CONSUMER_NAME [POLL_SECONDS]
Prints `ready`, then one `event <id> <topic> <key>` line per event handled;
exits cleanly on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading

from sqlalchemy.orm import Session

from muster_services.core.bus import DurableConsumer, Event, Listener
from muster_services.core.database import Database


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    poll_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    db = Database(url, pool_size=2)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def handle(session: Session, event: Event) -> None:
        print(f"event {event.id} {event.topic} {event.key}", flush=True)

    listener = Listener(DurableConsumer(db, name, handle), poll_seconds=poll_seconds)
    listener.start()
    print("ready", flush=True)
    done.wait()
    listener.stop()
    db.dispose()


if __name__ == "__main__":
    main()
