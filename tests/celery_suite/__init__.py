"""Celery's own integration suite as the judge: run as released and with celery-logs installed, compared."""
