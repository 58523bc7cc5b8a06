"""Redis plumbing: connections, the embedded server, every key name,
Lua loading, typed stream reads."""
