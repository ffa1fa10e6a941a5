"""A small real OTLP receiver on 127.0.0.1: HTTP (optionally TLS / mutual TLS) and gRPC listeners that record requests.

It answers every export with success (an empty protobuf response) or, with
``hang=True``, never answers, so tests can see which transport, path, headers,
compression and client certificate each exporter used, and when it sent.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc

_GRPC_SIGNALS = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": "traces",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": "metrics",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export": "logs",
}


@dataclass(frozen=True)
class Request:
    """One export request as the receiver saw it."""

    transport: str  # "http", "https" or "grpc"
    path: str  # URL path, or the gRPC method
    headers: dict[str, str]  # lower-case names
    at: float  # time.monotonic() on arrival (system-wide clock, comparable with the child's)
    client_cn: str | None = None

    @property
    def signal(self) -> str | None:
        """traces/metrics/logs for the standard gRPC methods and HTTP paths ending in the signal name."""
        if self.transport == "grpc":
            return _GRPC_SIGNALS.get(self.path)
        last = self.path.rstrip("/").rsplit("/", 1)[-1]
        return last if last in ("traces", "metrics", "logs") else None


@dataclass
class Receiver:
    """HTTP and gRPC OTLP listeners on ephemeral loopback ports; ``close()`` stops both."""

    hang: bool = False
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _http: Any = None
    _grpc: Any = None
    http_port: int = 0
    grpc_port: int = 0

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                cn = None
                if isinstance(self.connection, ssl.SSLSocket):
                    cert = self.connection.getpeercert() or {}
                    cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), None)
                receiver._record(
                    Request(
                        "https" if receiver.tls else "http",
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        time.monotonic(),
                        cn,
                    )
                )
                if receiver.hang:
                    receiver._stop.wait(60)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        if self.tls is not None:
            self._http.socket = self.tls.wrap_socket(self._http.socket, server_side=True)
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

        class Generic(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                method = details.method
                metadata = {k.lower(): v for k, v in details.invocation_metadata}

                def unary(request: bytes, context: Any) -> bytes:
                    receiver._record(Request("grpc", method, metadata, time.monotonic()))
                    if receiver.hang:
                        receiver._stop.wait(60)
                    return b""

                return grpc.unary_unary_rpc_method_handler(unary)

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._grpc.add_generic_rpc_handlers((Generic(),))
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP listener."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """URL of the gRPC listener."""
        return f"http://127.0.0.1:{self.grpc_port}"

    def seen(self) -> list[Request]:
        """A copy of the requests so far."""
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        """Release hanging requests and stop both listeners."""
        self._stop.set()
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=None)


@dataclass(frozen=True)
class Certificates:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        """A TLS server context; with ``require_client_cert`` the client must present a certificate from the CA."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


def make_certificates(directory: Path) -> Certificates:
    """Create the certificates with the openssl command (1 day validity)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=joblogger-test-ca")  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "joblogger-test-client")):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
        )
        extra = ["-extfile", "server.ext"] if name == "server" else []
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", *extra)  # fmt: skip
    return Certificates(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
