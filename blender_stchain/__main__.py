import sys

from .cli_weights import main

sys.exit(main())
