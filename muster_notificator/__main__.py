import sys

from muster_notificator.cli import main

sys.exit(main())
