"""The vendor's side: the HTTP client for its endpoints and the table
that classifies its answers."""
