"""``python -m gradientflow`` is the command line."""

from gradientflow.cli import main

raise SystemExit(main())
