"""ozonetel-purge: delete records from Ozonetel outbound campaigns in bulk."""

__version__ = "0.1.0"
