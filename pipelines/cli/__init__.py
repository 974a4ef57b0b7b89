"""The ``celery-logs`` command: ``main`` builds the parser from one module per group of subcommands
(``ship``, ``report``, ``kibana``, ``dev``, ``demo``); each builds library objects from its flags.
Nothing imports this wing.
"""

from pipelines.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
