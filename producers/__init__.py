"""Producers: the SDK upstream systems use, the ``produce`` CLI and the load generator."""
