import sys

from r3lm.cli import main

sys.exit(main())
