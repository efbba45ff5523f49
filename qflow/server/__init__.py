"""The qflow server: ``qflow start --listen HOST:PORT`` serves the web UI and a
versioned HTTP API (``/api/v1``) on one address, so that a laptop or notebook
dispatches to the cluster as Covalent's SDK does to its dispatcher.

``tokens`` keeps the server's token; ``api`` is the API (bearer token, version
handshake, body limit, then the local runtime's own calls); ``serve`` puts it beside
the UI and runs it.

May import every wing: it sits at the top, beside the CLI. Nothing imports it but the
CLI.
"""
