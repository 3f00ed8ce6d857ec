import sys

from pgcue.cli import main

sys.exit(main())
