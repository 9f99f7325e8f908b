"""The pipeline as one thing: ``streamledger run`` (supervisor), ``demo``, ``events tail``."""
