import sys

from muster_web.server import main

sys.exit(main())
