"""The queue: jobs and their wire format, the lanes of an account,
and the producer that fills them."""
