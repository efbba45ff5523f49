"""The web UI over the results store (``qflow ui``): pieces that need no web stack."""
