"""Draining a file end to end: rows, resumable state, the batch run and its report."""
