import sys

from pgcue.cli.main import main

sys.exit(main())
