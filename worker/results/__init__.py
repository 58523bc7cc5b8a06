"""Terminal records: the results stream, job status, and dead letters with their replay."""
