"""`sweep dashboard`: optuna-dashboard on a study storage, served until Ctrl-C.

The storage is opened with `sweep.storage.open_storage`, so SQLite runs in WAL mode with a busy
timeout: the dashboard's reads never hold a lock that makes a running worker's write fail (in
WAL mode readers and the one writer do not block each other). It refuses to create a database
that is not there. The server is wsgiref's, one thread per request (the page fetches several
things at once), as optuna-dashboard's own command line runs it; `close()` stops it cleanly.

optuna-dashboard has no authentication, and its API deletes and creates studies, edits notes
and sets trial states. So by default the app is wrapped in `ReadOnly`, which answers every
method but GET and HEAD with 405 before optuna-dashboard sees the request (its page reads with
GET only), and it listens on the loopback only: another address must be asked for with
`allow_remote`, writes with `allow_writes`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from sweep.errors import ConfigError
from sweep.storage import close_storage, open_storage, redact

logger = logging.getLogger(__name__)

READ_METHODS = ("GET", "HEAD")
READ_ONLY_MESSAGE = (
    b"405 Method Not Allowed: this dashboard is read-only, it answers GET and HEAD only.\n"
    b"To edit notes and trial states or delete studies from it, restart it with "
    b"`sweep dashboard --allow-writes`.\n"
)
# A refused request's body is read and dropped up to this size (see `_drain`).
_DRAIN_LIMIT = 1 << 20


class ReadOnly:
    """WSGI middleware: GET and HEAD go to the wrapped app, any other method gets a 405 and
    never reaches it."""

    def __init__(self, app: WSGIApplication) -> None:
        """Wrap `app` (optuna-dashboard's Bottle app)."""
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Pass a read on; answer anything else with 405 Method Not Allowed."""
        # Upper-cased because Bottle routes `delete` as DELETE: the check must see what it sees.
        if str(environ.get("REQUEST_METHOD", "GET")).upper() in READ_METHODS:
            return self.app(environ, start_response)
        _drain(environ)
        start_response(
            "405 Method Not Allowed",
            [
                ("Allow", ", ".join(READ_METHODS)),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(READ_ONLY_MESSAGE))),
            ],
        )
        return [READ_ONLY_MESSAGE]


def _drain(environ: WSGIEnvironment) -> None:
    """Read and drop a refused request's body (its first MiB).

    The server closes the connection after answering; closing a socket with unread bytes makes
    the kernel send a reset, which can destroy the 405 before the client has read it.
    """
    try:
        remaining = min(max(int(environ.get("CONTENT_LENGTH") or 0), 0), _DRAIN_LIMIT)
    except ValueError:
        return
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            return
        remaining -= len(chunk)


class ListenAddress(NamedTuple):
    """Where to bind: the socket family, the resolved socket address (an IPv6 one keeps its
    scope: fe80::1%eth0 resolves to ('fe80::1', 0, 0, 2)), and whether it is loopback."""

    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]
    loopback: bool

    @property
    def address(self) -> str:
        """The numeric address, for messages."""
        return str(self.sockaddr[0])


def _is_loopback(address: str) -> bool:
    """Whether a numeric address is on the loopback (127.0.0.0/8, ::1, ::ffff:127.x.x.x)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scope (%eth0) is not the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listen_address(host: str, allow_remote: bool = False) -> ListenAddress:
    """Resolve `host` once into the address to bind; raise ConfigError for a non-loopback one
    unless `allow_remote`.

    The server binds the resolved address, not the name, so a name checked here cannot resolve
    to another address at bind time. Every address the name resolves to must be loopback: which
    one the system would pick is not ours to predict. IPv4 is preferred when a name has both
    (`localhost`), as before IPv6 was supported here.
    """
    if not host:
        raise ConfigError("--host must not be empty (0.0.0.0 is every IPv4 interface)")
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"cannot resolve --host {host}: {getattr(e, 'strerror', e)}") from None
    addresses = [
        (family, tuple(sockaddr))
        for family, *_, sockaddr in found
        if family in (socket.AF_INET, socket.AF_INET6)
    ]
    if not addresses:
        raise ConfigError(f"--host {host} has no IPv4 or IPv6 address")
    remote = list(dict.fromkeys(str(addr[0]) for _, addr in addresses if not _is_loopback(addr[0])))
    if remote and not allow_remote:
        resolved = "" if remote == [host] else f" ({', '.join(remote)})"
        raise ConfigError(
            f"refusing to listen on {host}{resolved}: other machines could reach the dashboard, "
            "which has no authentication; use 127.0.0.1 (the default), or pass --allow-remote"
        )
    family, sockaddr = min(addresses, key=lambda a: a[0] != socket.AF_INET)
    return ListenAddress(family, sockaddr, loopback=not remote)


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    # Request threads must not keep the process alive after Ctrl-C.
    daemon_threads = True


class _ThreadedServer6(_ThreadedServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the debug log instead of stderr (the page polls every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def _make_server(listen: ListenAddress, port: int, app: WSGIApplication) -> WSGIServer:
    """A threaded wsgiref server bound to the resolved address (raises OSError)."""
    server_class = _ThreadedServer6 if listen.family == socket.AF_INET6 else _ThreadedServer
    server = server_class((listen.sockaddr[0], port, *listen.sockaddr[2:]), _QuietHandler)
    server.set_app(app)
    return server


class Dashboard:
    """optuna-dashboard bound to host:port on an opened storage; `serve_forever` until Ctrl-C."""

    def __init__(
        self,
        storage_url: str,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        allow_writes: bool = False,
        allow_remote: bool = False,
    ) -> None:
        """Open the storage and bind the port; raises StorageError / ConfigError.

        Read-only unless `allow_writes`; a `host` off the loopback needs `allow_remote`.
        """
        if not 0 <= port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {port}")
        # Checked before the storage is opened: a refused host leaves nothing open.
        self.listen = listen_address(host, allow_remote)
        self.allow_writes = allow_writes
        # Imported here: optuna-dashboard is only needed by this command.
        from optuna_dashboard import wsgi

        self.storage_url = storage_url
        self.storage = open_storage(storage_url, must_exist=True)
        try:
            app = wsgi(self.storage)
            self.server = _make_server(self.listen, port, app if allow_writes else ReadOnly(app))
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
        host = str(self.server.server_address[0])
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/dashboard"

    def describe(self) -> str:
        """One line for the terminal: what is served where, read-only or writable."""
        mode = "writable" if self.allow_writes else "read-only"
        return f"optuna-dashboard ({mode}) for {redact(self.storage_url)} at {self.url}"

    def remote_warning(self) -> str | None:
        """The warning to print when it listens off the loopback (None on the loopback)."""
        if self.listen.loopback:
            return None
        can = "read, change and delete" if self.allow_writes else "read"
        return (
            f"warning: the dashboard has no authentication and listens on {self.listen.address}: "
            f"anyone who can reach {self.url} can {can} the studies"
        )

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
