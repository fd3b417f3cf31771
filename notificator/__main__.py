import sys

from notificator.cli import main

sys.exit(main())
