"""Bulk scoring: files in, a results file out, through the same workers as stream jobs."""
