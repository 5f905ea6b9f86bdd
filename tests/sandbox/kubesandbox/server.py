"""HTTPS front end of one sandbox cluster process (``python -m kubesandbox serve --dir D``)."""

import json
import logging
import os
import random
import select
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from kubeharness import pki

from . import auth, tlsverify
from .api import Cluster, Request, Response, WatchStream
from .errors import ApiError
from .controllers import Controllers

LOG = logging.getLogger("kubesandbox.server")
DEBUG = bool(os.environ.get("KUBESANDBOX_DEBUG"))
_AUDIT_IDS = random.Random()


class CA:
    def __init__(self, cert_path, key_path):
        with open(cert_path, "rb") as handle:
            self.cert_pem = handle.read()
        with open(key_path, "rb") as handle:
            key_pem = handle.read()
        self.cert = pki.load_cert(self.cert_pem)
        self.key = pki.load_key(key_pem)


def encode(body):
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    return (json.dumps(body, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster = None
    soft_verify = False

    def setup(self):
        self.request.settimeout(300)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass

    def send_response(self, code, message=None):
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length:
            return self.rfile.read(int(length))
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def dispatch(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        body = self._read_body()
        headers = dict(self.headers.items())
        peer, bad_cert = None, False
        try:
            if self.soft_verify:
                der = self.connection.getpeercert(binary_form=True)
                if der:
                    verified = tlsverify.verify_client(der, self.cluster.ca.cert)
                    if verified:
                        peer = auth.with_authenticated(verified[0], "", verified[1])
                    else:
                        bad_cert = True
            else:
                peer = auth.user_from_peercert(self.connection.getpeercert())
        except (ValueError, AttributeError):
            peer = None
        try:
            user = self.cluster.authenticate(peer, self.headers.get("Authorization"))
            if bad_cert and user is auth.ANONYMOUS:
                # the x509 authenticator failed and nothing else authenticated the request
                raise auth.Unauthorized()
        except auth.Unauthorized:
            self.write(Response(401, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                      "message": "Unauthorized", "reason": "Unauthorized", "code": 401}))
            return
        name = self.headers.get("Impersonate-User")
        groups = self.headers.get_all("Impersonate-Group") or []
        extras = {}
        for key, value in self.headers.items():
            if key.lower().startswith("impersonate-extra-"):
                extras.setdefault(unquote(key[len("impersonate-extra-"):]).lower(), []).append(value)
        if name or groups or extras or self.headers.get("Impersonate-Uid"):
            try:
                user = self.cluster.impersonate(user, name, groups, self.headers.get("Impersonate-Uid"), extras)
            except ApiError as err:
                self.write(Response(err.code, err.status(), err.headers))
                return
        # like the apiserver (Go's URL.Path), route on the decoded path: a CSR "My CSR:X" is asked for as My%20CSR:X
        req = Request(self.command, unquote(parts.path) or "/", query, headers, body, user)
        delay = float(self.cluster.options.get("network_delay") or 0)
        if delay > 0 and not req.path.startswith("/_sandbox/"):
            # a cluster farther away than loopback: every API exchange costs one round trip more
            time.sleep(delay)
        try:
            resp = self.cluster.handle(req)
        except Exception as exc:  # pylint: disable=broad-except
            LOG.exception("internal error on %s %s", self.command, self.path)
            resp = Response(500, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": "Internal error occurred: %s" % exc, "reason": "InternalError",
                                  "code": 500})
        if isinstance(resp, WatchStream):
            self.stream(resp)
        else:
            self.write(resp)
        if DEBUG:
            sys.stderr.write("%.3f %s %s %s %s ct=%s accept=%s\n" % (
                time.time(), user.name, self.command, self.path, getattr(resp, "code", "watch"),
                self.headers.get("Content-Type"), self.headers.get("Accept")))
            sys.stderr.flush()

    def _common_headers(self):
        self.send_header("Audit-Id", str(uuid.UUID(int=_AUDIT_IDS.getrandbits(128), version=4)))
        self.send_header("Cache-Control", "no-cache, private")

    def write(self, resp):
        data = encode(resp.body)
        self.send_response(resp.code)
        self._common_headers()
        self.send_header("Content-Type", resp.content_type)
        for key, value in resp.headers.items():
            for item in value if isinstance(value, list) else [value]:
                self.send_header(key, item)
        self.send_header("Content-Length", str(len(data)))
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _peer_closed(self):
        """True when the client has gone away (it sends nothing while it reads a watch)."""
        sock = self.connection
        try:
            readable, _w, _x = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        previous = sock.gettimeout()
        try:
            sock.settimeout(0.01)
            return sock.recv(1) == b""
        except (ssl.SSLWantReadError, socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
        finally:
            try:
                sock.settimeout(previous)
            except OSError:
                pass

    def stream(self, watch):
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        if watch.expired is not None:
            self._chunk((json.dumps({"type": "ERROR", "object": watch.expired}, separators=(",", ":"))
                         + "\n").encode())
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        watcher = watch.watcher
        store = self.cluster.store
        deadline = time.monotonic() + watch.timeout
        interval = float(self.cluster.options.get("bookmark_interval", 60))
        last_bookmark = time.monotonic()
        initial_left = watcher.initial
        initial_pending = watch.initial_end
        try:
            if initial_pending and initial_left == 0:
                self._chunk(watch.bookmark(watcher.start_rv, True))
                initial_pending = False
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                event = watcher.get(min(remaining, 0.5 if watch.bookmarks else 2.0))
                if event == "DROPPED":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if event is None:
                    if self._peer_closed():
                        self.close_connection = True
                        return
                    if watch.bookmarks and time.monotonic() - last_bookmark >= interval:
                        with store.lock:
                            rv = store.rv if not watcher.events else None
                        if rv is not None:
                            self._chunk(watch.bookmark(rv))
                            last_bookmark = time.monotonic()
                    continue
                out = watch.translate(event)
                if out is not None:
                    self._chunk(watch.encode(out[0], out[1]))
                if initial_left:
                    initial_left -= 1
                    if initial_left == 0 and initial_pending:
                        self._chunk(watch.bookmark(watcher.start_rv, True))
                        initial_pending = False
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            watcher.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, context):
        self.context = context
        super().__init__(address, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError, ConnectionError)):
            return
        LOG.exception("error serving %s", client_address)


DEFAULTS = {
    "signing_duration": 8760 * 3600.0, "signing_delay": 0.0, "cleaner_interval": 3600.0,
    "approved_ttl": 3600.0, "denied_ttl": 3600.0, "failed_ttl": 3600.0, "pending_ttl": 86400.0,
    "approver_max_backoff": 1000.0, "watch_history": 2000, "bookmark_interval": 60.0, "watch_timeout": 1800.0,
    "network_delay": 0.0,
}


def _watch_owner(owner, directory, stop):
    """Stop this cluster (and, from cluster-1, the sandbox's etcd) once the owning process is gone."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(owner, 0)
            with open("/proc/%d/stat" % owner, encoding="ascii", errors="replace") as handle:
                alive = handle.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            alive = False
        if alive:
            continue
        if os.path.basename(directory) == "cluster-1":
            from .launcher import stop_recorded_etcd  # pylint: disable=import-outside-toplevel
            stop_recorded_etcd(os.path.dirname(directory))
        stop(None, None)
        return


def serve(directory):
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with open(os.path.join(directory, "options.json"), encoding="utf-8") as handle:
        options = dict(DEFAULTS, **json.load(handle))
    name = os.path.basename(os.path.abspath(directory))
    ca = CA(os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key"))
    options["token_file"] = os.path.join(directory, "tokens.csv")
    cluster = Cluster(name, ca, options)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(directory, "server.crt"), os.path.join(directory, "server.key"))
    context.load_verify_locations(os.path.join(directory, "ca.crt"))
    context.verify_mode = ssl.CERT_OPTIONAL
    if os.environ.get("KUBESANDBOX_STRICT_TLS") != "1":
        Handler.soft_verify = tlsverify.install(context)
    context.set_alpn_protocols(["http/1.1"])
    Handler.cluster = cluster
    httpd = Server(("127.0.0.1", 0), Handler, context)
    port = httpd.server_address[1]
    url = "https://127.0.0.1:%d" % port
    cluster.server_address = "127.0.0.1:%d" % port
    controllers = Controllers(cluster)
    controllers.start()

    def stop(_signum, _frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    owner = int(options.get("owner_pid") or 0)
    if owner:
        threading.Thread(target=_watch_owner, args=(owner, directory, stop), daemon=True).start()
    pki.write_file(os.path.join(directory, "server"), url)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        controllers.stop()
        httpd.server_close()
