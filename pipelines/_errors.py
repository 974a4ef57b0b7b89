"""Errors that reach the user of the command line, and the exit codes the commands share."""

from __future__ import annotations

#: Exit codes every ``celery-logs`` command uses (documented in the README).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: Elasticsearch (or Kibana) could not be reached.
EXIT_UNAVAILABLE = 3
#: The command finished but some input was dead-lettered or refused.
EXIT_PARTIAL = 4


class CliError(Exception):
    """A failure a user caused or can fix; its message is one sentence and is all the user sees."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
