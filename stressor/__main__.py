"""Run the command line: ``python -m stressor``."""

from stressor._entry import main

raise SystemExit(main())
