"""What every loopback HTTPS test double shares: a throwaway certificate, the TLS server's life.

The real clients (databento, requests, the Massive SDK) insist on ``https://``, so each double
(historical_http, barchart_http, massive_http) serves TLS on 127.0.0.1 with a self-signed
certificate a test trusts through ``REQUESTS_CA_BUNDLE``. This module holds that part once:
``make_self_signed_cert``, ``LoopbackTLSServer`` (start/stop, context manager, ``url``, request
recording under a lock, handler errors kept in ``errors``), ``ModalServer`` (the ``mode`` /
``set_mode`` / ``mode_times`` switch for canned bad answers), ``QuietHandler`` (JSON replies, no
log noise) and ``serve_trusted`` for fixtures and
``serve_until_signal`` for ``python -m tests.servers.<name> --port N``. What each
service answers stays in its own module.
"""

from __future__ import annotations

import abc
import argparse
import datetime as dt
import ipaddress
import json
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar
from urllib.parse import parse_qs

if TYPE_CHECKING:
    import pytest


S = TypeVar("S", bound="LoopbackTLSServer")


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem``/``key.pem`` for CN=localhost, SAN IP:127.0.0.1 and DNS:localhost.

    Uses the ``cryptography`` package when the venv has it (fast, no subprocess), otherwise the
    ``openssl`` command line tool.
    """
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key_path),
                "-out",
                str(cert_path),
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )
        return cert_path, key_path

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        # Like `openssl req -x509`: a self-signed CA that is also the server's leaf, so it can be
        # the only entry of the trust bundle.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def query_fields(raw: str) -> dict[str, str]:
    """A query string or form body as one value per name (the last, as most servers take)."""
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


class _QuietServer(ThreadingHTTPServer):
    """Records handler errors instead of printing a traceback to stderr.

    A client that refuses the certificate makes the handler's first read fail with an SSL
    error; that is an expected outcome in some tests, not noise for the test log.
    """

    daemon_threads = True
    errors: list[BaseException]

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None:
            self.errors.append(exc)


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 replies with a length, JSON bodies; no request log (requests are recorded)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # quiet: pytest output stays readable; requests are recorded instead

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")


class LoopbackTLSServer(abc.ABC):
    """A service double on https://127.0.0.1:<port>; use as a context manager.

    A subclass sets ``name`` (thread name, temp-dir prefix) and returns its request handler
    class from ``handler_class``; handlers call ``_record`` for every request they see.
    """

    name: ClassVar[str] = "loopback"

    def __init__(self, *, port: int = 0) -> None:
        self.requested_port = port
        self.requests: list[Any] = []
        self.errors: list[BaseException] = []
        """Exceptions raised while serving (e.g. a client that rejected the certificate)."""
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._httpd: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self.cert_path: Path | None = None

    @abc.abstractmethod
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The request handler of this double (each server answers its own endpoints)."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"ifd-{self.name}-tls-")
        self.cert_path, key_path = make_self_signed_cert(Path(self._tmp.name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, key_path)
        httpd = _QuietServer(("127.0.0.1", self.requested_port), self.handler_class())
        httpd.errors = self.errors
        # Handshake in the handler thread, not in the accept loop, so one stuck client cannot
        # stall the server.
        httpd.socket = ctx.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self._httpd = httpd
        self._thread = threading.Thread(
            # A short poll interval keeps shutdown() (and so each test's teardown) fast.
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The base URL to give the client (explicit https scheme, IP host)."""
        return f"https://127.0.0.1:{self.port}"

    # -- recording ---------------------------------------------------------------------------

    def count(self, path_prefix: str = "") -> int:
        """Requests seen so far (to paths starting with ``path_prefix``)."""
        with self._lock:
            return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    def _record(self, request: Any) -> None:
        with self._lock:
            self.requests.append(request)


class ModalServer(LoopbackTLSServer):
    """A double whose ``mode`` picks a canned answer (``MODES``; ``ok`` is the good one).

    ``set_mode(mode, times)`` makes a mode last ``times`` requests, then ``ok`` again; slow
    modes wait ``delay_s`` seconds.
    """

    MODES: ClassVar[tuple[str, ...]] = ("ok",)

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port=port)
        self.mode = "ok"
        self.mode_times: int | None = None
        self.delay_s = 1.0

    def set_mode(self, mode: str, times: int | None = None) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(self.MODES)}")
        with self._lock:
            self.mode, self.mode_times = mode, times

    def _take(self, request: Any) -> str:
        """Record ``request`` and return the mode it is answered in (using up ``times``)."""
        with self._lock:
            self.requests.append(request)
            mode = self.mode
            if self.mode_times is not None:
                self.mode_times -= 1
                if self.mode_times <= 0:
                    self.mode, self.mode_times = "ok", None
            return mode


def serve_trusted(server: S, monkeypatch: pytest.MonkeyPatch) -> Iterator[S]:
    """Run ``server`` for one test, trusted through ``REQUESTS_CA_BUNDLE`` (set with
    ``monkeypatch``, never globally; requests reads it on every call). For fixtures:
    ``yield from serve_trusted(MyServer(), monkeypatch)``."""
    with server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert_path))
        yield server


def cli_parser(
    prog: str, description: str, api_key: str, modes: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """The by-hand server's options: ``--port``, ``--api-key`` and, given ``modes``, ``--mode``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=api_key, help="the one key accepted")
    if modes:
        parser.add_argument("--mode", default="ok", choices=modes)
    return parser


def serve_until_signal(server: LoopbackTLSServer, label: str) -> int:
    """Serve until SIGINT/SIGTERM, after printing ``<label> on <url> (REQUESTS_CA_BUNDLE=…)``
    (the line tests/test_historical_http_server.py reads); 0 for the exit status."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(
            f"{label} on {server.url} (REQUESTS_CA_BUNDLE={server.cert_path}); Ctrl-C stops",
            flush=True,
        )
        stop.wait()
    return 0


__all__ = [
    "LoopbackTLSServer",
    "ModalServer",
    "QuietHandler",
    "cli_parser",
    "make_self_signed_cert",
    "query_fields",
    "serve_trusted",
    "serve_until_signal",
]
