"""`sweep dashboard`: optuna-dashboard on a study storage, served until Ctrl-C.

The storage is opened with `sweep.storage.open_storage`, so SQLite runs in WAL mode with a busy
timeout: the dashboard's reads never hold a lock that makes a running worker's write fail (in
WAL mode readers and the one writer do not block each other). It refuses to create a database
that is not there. The server is wsgiref's, one thread per request (the page fetches several
things at once), as optuna-dashboard's own command line runs it; `close()` stops it cleanly.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sweep.errors import ConfigError
from sweep.storage import close_storage, open_storage, redact

logger = logging.getLogger(__name__)


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    # Request threads must not keep the process alive after Ctrl-C.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the debug log instead of stderr (the page polls every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class Dashboard:
    """optuna-dashboard bound to host:port on an opened storage; `serve_forever` until Ctrl-C."""

    def __init__(self, storage_url: str, host: str = "127.0.0.1", port: int = 8080) -> None:
        """Open the storage and bind the port; raises StorageError / ConfigError."""
        if not 0 <= port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {port}")
        # Imported here: optuna-dashboard is only needed by this command.
        from optuna_dashboard import wsgi

        self.storage_url = storage_url
        self.storage = open_storage(storage_url, must_exist=True)
        try:
            app = wsgi(self.storage)
            self.server = make_server(
                host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler
            )
        except OSError as e:
            close_storage(self.storage)
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use; pick another with --port"
                ) from None
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        except BaseException:
            close_storage(self.storage)
            raise
        self._closed = threading.Event()
        self._serving_in: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose when asked for port 0)."""
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """The dashboard's address, for people to open."""
        host = self.server.server_address[0]
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/dashboard"

    def describe(self) -> str:
        """One line for the terminal: what is served where."""
        return f"optuna-dashboard for {redact(self.storage_url)} at {self.url}"

    def serve_forever(self) -> None:
        """Serve until `close()` is called (from another thread) or Ctrl-C is pressed."""
        self._serving_in = threading.current_thread()
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            self._serving_in = None

    def close(self) -> None:
        """Stop listening and release the storage's connections (safe to call twice)."""
        if self._closed.is_set():
            return
        self._closed.set()
        serving = self._serving_in
        if serving is not None and serving is not threading.current_thread():
            # shutdown() waits for the serving loop to end: only from another thread.
            self.server.shutdown()
        self.server.server_close()
        close_storage(self.storage)
