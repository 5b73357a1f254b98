"""`python -m seg_perception` runs the `seg-perception` command."""
import sys

from seg_perception.cli import main

sys.exit(main())
