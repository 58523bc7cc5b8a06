"""The central bearer-token store and its single-flight refresh."""
