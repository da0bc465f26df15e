"""Run the command line: ``python -m stressor``."""

from stressor.cli import main

raise SystemExit(main())
