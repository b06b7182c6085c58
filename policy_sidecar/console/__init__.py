"""The web console: server-rendered pages over the admin gRPC API (docs/ui.md).

It runs in the admin process (`policy-sidecar admin --ui-port`), calls the admin
service with the logged-in user's token, and never touches Postgres itself.
"""

from policy_sidecar.console.server import ConsoleServer, build_app, start_console

__all__ = ["ConsoleServer", "build_app", "start_console"]
