import sys

from muster_console.cli import main

sys.exit(main())
