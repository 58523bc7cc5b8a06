"""An account's switches (pause, resume, halt) and the read-only view of what it is doing."""
