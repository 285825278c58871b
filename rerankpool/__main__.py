import sys

from rerankpool.cli import main

sys.exit(main())
