"""ozonetel-purge: delete records from Ozonetel outbound campaigns in bulk."""

__version__ = "0.1.0"

# After __version__: modules imported from here may read it.
from worker.producer import JobStatus, Producer, Receipt

__all__ = ["JobStatus", "Producer", "Receipt", "__version__"]
