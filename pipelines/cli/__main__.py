"""``python -m pipelines.cli``: the same as the ``celery-logs`` command."""

from pipelines.cli.main import main

raise SystemExit(main())
