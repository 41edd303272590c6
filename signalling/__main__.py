"""`python -m signalling` is `visitroom`."""

import sys

from signalling.cli import main

sys.exit(main())
