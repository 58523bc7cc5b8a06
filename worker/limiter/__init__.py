"""The distributed sliding-window limiter: permits timed by the Redis server's clock."""
