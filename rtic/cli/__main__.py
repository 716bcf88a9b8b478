import sys

from rtic.cli.main import main

sys.exit(main())
