"""Connections to one paramd server: the binary protocol with pipelining
(TcpConnection) and the HTTP/JSON API (HttpConnection).

A TcpConnection writes each request as soon as it is submitted; the server
answers in request order.  Replies are read by whichever thread needs one:
a caller waiting for its reply reads (and completes) the replies in front
of it, so a request made alone costs no thread switch.  Whenever replies
are owed and nobody is reading (several requests in flight, or a waiting
caller got its own reply first), a short-lived reader thread reads them
until none is owed.  So any number of requests can be in flight on one
connection, and a large batch never deadlocks with the server's flow
control.
"""

import collections
import http.client
import json
import os
import re
import select
import socket
import ssl
import struct
import threading
import time
import urllib.parse

from . import errors
from . import protocol as wire

# Frames up to this size are joined and written with one sendall; larger
# ones are written buffer by buffer (their float data is never copied).
_JOIN_LIMIT = 64 << 10
_READ_BUFFER = 256 << 10


def parse_url(address, default_port):
    """(scheme, host, port) of "host:port", "[v6]:port", "host", (host, port)
    or any of them after "tcp://", "http://" or "https://"; scheme is None
    when the address names none."""
    if isinstance(address, tuple):
        return None, address[0], int(address[1])
    text = str(address)
    scheme = None
    for prefix in ("tcp", "http", "https"):
        if text.startswith(prefix + "://"):
            scheme, text = prefix, text[len(prefix) + 3:]
    text = text.rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        return scheme, host or "127.0.0.1", int(port) if port else default_port
    except ValueError:
        raise ValueError("bad address %r: expected HOST:PORT" % (address,)) from None


def parse_address(address, default_port):
    """("host", port) of "host:port", "[v6]:port", "host" or (host, port)."""
    return parse_url(address, default_port)[1:]


# RFC 6750's b64token: what a bearer token may hold (and nothing that could
# end an HTTP header line).
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")


def check_token(token):
    """The token, or ValueError when it is not a bearer token."""
    if not isinstance(token, str):
        raise ValueError("token must be a str, got %s" % type(token).__name__)
    if token and not _TOKEN.match(token):
        raise ValueError("token has characters a bearer token cannot have (RFC 6750 b64token: "
                         "A-Z a-z 0-9 - . _ ~ + / and trailing =)")
    return token


def tls_context(tls_ca=None):
    """An ssl.SSLContext that verifies the server's certificate and host
    name: against the CA file (or self-signed certificate) tls_ca, else the
    system's trust store.  There is no way to turn verification off."""
    context = ssl.create_default_context(cafile=os.fspath(tls_ca) if tls_ca is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Pending:
    """A request in flight.  result(timeout) waits for its reply and returns
    the decoded value or raises its ParamdError; done() says whether it
    has come."""

    __slots__ = ("_event", "_value", "_error", "_decode", "_waiter", "request_id")

    def __init__(self, decode=None, request_id=0, waiter=None):
        self._event = threading.Event()
        self._value = self._error = None
        self._decode = decode
        self._waiter = waiter      # reads replies for this request, when it can
        self.request_id = request_id

    @classmethod
    def completed(cls, value=None, error=None):
        pending = cls()
        pending._value, pending._error = value, error
        pending._event.set()
        return pending

    def done(self):
        return self._event.is_set()

    def _finish(self, value=None, error=None):
        self._value, self._error = value, error
        self._event.set()

    def wait(self, timeout=None):
        """True once the reply has come; False when `timeout` passed first."""
        if self._event.is_set():
            return True
        if self._waiter is None:
            return self._event.wait(timeout)
        self._waiter(self, timeout)
        return self._event.is_set()

    def exception(self, timeout=None):
        if not self.wait(timeout):
            return errors.Timeout(errors.TIMEOUT, "no reply within %g s" % timeout)
        return self._error

    def result(self, timeout=None):
        if not self.wait(timeout):
            raise errors.Timeout(errors.TIMEOUT,
                                 "no reply within %g s (the request may still be applied)"
                                 % timeout)
        if self._error is not None:
            raise self._error
        return self._value


class _Stream:
    """The reading side of one socket: a buffer, and a frame being read."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray(_READ_BUFFER)
        self.view = memoryview(self.buffer)
        self.start = self.end = 0
        self.frame = None          # [header, payload, bytes got] while a payload is read

    def _wait_readable(self, deadline):
        if deadline is None:
            return
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.sock], [], [], left)[0]:
            raise socket.timeout("no reply in time")

    def _fill(self, deadline):
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buffer):
            count = self.end - self.start
            self.buffer[:count] = self.buffer[self.start:self.end]
            self.start, self.end = 0, count
        self._wait_readable(deadline)
        got = self.sock.recv_into(self.view[self.end:])
        if got == 0:
            raise EOFError("closed by the server")
        self.end += got

    def read_frame(self, deadline=None):
        """The next (header, payload bytearray); resumable after a timeout."""
        if self.frame is None:
            while self.end - self.start < wire.HEADER_SIZE:
                self._fill(deadline)
            header = wire.parse_header(self.view[self.start:self.start + wire.HEADER_SIZE])
            self.start += wire.HEADER_SIZE
            self.frame = [header, bytearray(header.length), 0]
        header, payload, got = self.frame
        target = memoryview(payload)
        while got < header.length:
            if self.end > self.start:
                n = min(self.end - self.start, header.length - got)
                target[got:got + n] = self.view[self.start:self.start + n]
                self.start += n
                got = self.frame[2] = got + n
            elif header.length - got >= _READ_BUFFER // 2:
                self._wait_readable(deadline)
                n = self.sock.recv_into(target[got:])
                if n == 0:
                    raise EOFError("closed by the server")
                got = self.frame[2] = got + n
            else:
                self._fill(deadline)
        self.frame = None
        return header, payload


class TcpConnection:
    """One binary-protocol connection, pipelined, safe to share between
    threads.  `shard` labels errors; `map_version` is the client's shard-map
    version (None without a map), for not_owner errors.

    Small frames are written by the submitting thread; large ones (and any
    frame submitted while large ones wait) by a writer thread, in submission
    order, so that a caller can hand large pushes to several shards at once
    and the shards receive them in parallel."""

    def __init__(self, host, port, timeout=60.0, token="", client_name="paramd-python",
                 shard=None, map_version=None):
        self.host, self.port = host, port
        self.timeout = timeout
        self.token, self.client_name = check_token(token), client_name
        self.shard, self.map_version = shard, map_version
        self.server = None
        self.max_frame_size = None
        # Lock order: _send_lock, then _pending_lock.  Readers take only
        # _pending_lock, so a write blocked on a full socket never stops the
        # replies from being read.
        self._send_lock = threading.Lock()
        self._send_ready = threading.Condition(self._send_lock)
        self._write_queue = collections.deque()  # (socket, buffers) for the writer
        self._writing = False
        self._writer = None
        self._socket = None
        self._next_id = 1
        self._closed = False
        self._pending_lock = threading.Lock()
        self._pending = collections.deque()      # requests on _stream, in wire order
        self._stream = None                       # the socket whose replies are owed
        self._reading = False                     # some thread reads _stream
        self._reader = None

    # -- connecting ---------------------------------------------------------

    def _connect_locked(self):
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as failure:
            raise errors.ConnectFailed(errors.CONNECT, "%s:%d: %s" % (self.host, self.port, failure),
                                       self.shard) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request_id = self._take_id()
            sock.sendall(wire.encode_hello(request_id, token=self.token, client=self.client_name))
            stream = _Stream(sock)
            header, payload = stream.read_frame(time.monotonic() + self.timeout)
            if header.opcode == wire.ERROR:
                code, version, message = wire.decode_error(payload)
                raise errors.make_error(code, message, self.shard, version, self.map_version)
            if header.opcode != wire.HELLO | wire.REPLY or header.request_id != request_id:
                raise errors.ParamdError(errors.BAD_FRAME, "HELLO answered by opcode 0x%02x"
                                         % header.opcode, self.shard)
            hello = wire.decode_hello_reply(payload)
        except (OSError, EOFError, wire.ProtocolError) as failure:
            sock.close()
            raise errors.ConnectFailed(errors.CONNECT, "%s:%d: HELLO failed: %s"
                                       % (self.host, self.port, failure or "timed out"),
                                       self.shard) from None
        except BaseException:
            sock.close()
            raise
        self.server, self.max_frame_size = hello["server"], hello["max_frame_size"]
        sock.settimeout(None)        # blocking; readers wait with select when they have a deadline
        self._socket, self._closed = sock, False
        with self._pending_lock:
            self._stream = stream

    def connect(self):
        with self._send_lock:
            if self._socket is None:
                self._connect_locked()

    def _take_id(self):
        request_id = self._next_id
        self._next_id += 1
        return request_id

    # -- requests -----------------------------------------------------------

    def submit(self, encode, decode, copy=False):
        """Sends one request: encode(request_id) -> bytes or a list of
        buffers; decode(opcode, payload) -> value for a reply that is not an
        ERROR.  Returns its Pending.  copy=True joins the buffers at once,
        so the caller may change its arrays before the frame is written."""
        with self._send_lock:
            if self._socket is None:
                try:
                    self._connect_locked()
                except errors.ParamdError as failure:
                    return Pending.completed(error=failure)
            sock = self._socket
            request_id = self._take_id()
            data = encode(request_id)
            parts = [data] if isinstance(data, (bytes, bytearray)) else data
            size = sum(memoryview(p).nbytes for p in parts)
            if self.max_frame_size is not None and size - wire.HEADER_SIZE > self.max_frame_size:
                return Pending.completed(error=errors.ParamdError(
                    CODES_PAYLOAD_TOO_LARGE, "a frame of %d bytes exceeds the server's limit of "
                    "%d" % (size - wire.HEADER_SIZE, self.max_frame_size), self.shard))
            if len(parts) > 1 and (size <= _JOIN_LIMIT or copy):
                parts = [b"".join(parts)]
            pending = Pending(decode, request_id, self._wait)
            with self._pending_lock:
                self._pending.append(pending)
                if len(self._pending) > 1 and not self._reading:
                    self._start_reader_locked()
            if size > _JOIN_LIMIT or self._write_queue or self._writing:
                self._write_queue.append((sock, parts))
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                                    name="paramd-writer-%s:%d"
                                                    % (self.host, self.port))
                    self._writer.start()
                self._send_ready.notify()
            else:
                try:
                    sock.sendall(parts[0])
                except OSError as failure:
                    self._fail_locked(sock, "sending to %s:%d failed: %s"
                                      % (self.host, self.port, failure))
            return pending

    def call(self, encode, decode, timeout=None):
        return self.submit(encode, decode).result(self.timeout if timeout is None else timeout)

    def _write_loop(self):
        while True:
            with self._send_lock:
                while not self._write_queue and not self._closed:
                    self._send_ready.wait()
                if self._closed and not self._write_queue:
                    self._writer = None
                    return
                sock, parts = self._write_queue.popleft()
                self._writing = True
            failure = None
            try:
                for part in parts:
                    sock.sendall(part)
            except OSError as error:
                failure = error
            with self._send_lock:
                self._writing = False
                if failure is not None:
                    self._fail_locked(sock, "sending to %s:%d failed: %s"
                                      % (self.host, self.port, failure))

    # -- reading ------------------------------------------------------------

    def _start_reader_locked(self):
        """Under _pending_lock: a thread that reads until no reply is owed."""
        self._reading = True
        stream = self._stream
        self._reader = threading.Thread(target=self._read_loop, args=(stream,), daemon=True,
                                        name="paramd-reader-%s:%d" % (self.host, self.port))
        self._reader.start()

    def _release_locked(self, stream):
        """Under _pending_lock: gives up reading `stream`; replies still owed
        on it get a reader thread."""
        self._reading = False
        if self._pending and self._stream is stream:
            self._start_reader_locked()

    def _wait(self, pending, timeout):
        """Waits for `pending`, reading replies in this thread when no other
        thread reads."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._pending_lock:
            stream = self._stream
            mine = not pending.done() and not self._reading and stream is not None and \
                any(p is pending for p in self._pending)
            if mine:
                self._reading = True
        if not mine:
            pending._event.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            return
        try:
            while not pending.done():
                if not self._read_one(stream, deadline):
                    break
        finally:
            with self._pending_lock:
                self._release_locked(stream)

    def _read_loop(self, stream):
        while True:
            with self._pending_lock:
                if not self._pending or self._stream is not stream:
                    if self._stream is stream:
                        self._reading = False
                    return
            if not self._read_one(stream, None):
                with self._pending_lock:
                    if self._stream is stream:
                        self._reading = False
                return

    def _read_one(self, stream, deadline):
        """Reads one reply from `stream` and completes its request.  False
        when the deadline passed or the connection failed."""
        try:
            header, payload = stream.read_frame(deadline)
        except socket.timeout:
            return False
        except (OSError, wire.ProtocolError, EOFError) as failure:
            self._fail(stream.sock, "connection to %s:%d: %s"
                       % (self.host, self.port, failure or "closed"))
            return False
        with self._pending_lock:
            if self._stream is not stream:
                return False
            pending = self._pending.popleft() if self._pending else None
        if pending is None:
            self._fail(stream.sock, "a reply (id %d) with no request in flight" % header.request_id)
            return False
        if header.request_id != pending.request_id and not (
                header.opcode == wire.ERROR and header.request_id == 0):
            pending._finish(error=errors.ParamdError(
                errors.BAD_FRAME, "reply id %d for request %d"
                % (header.request_id, pending.request_id), self.shard))
            self._fail(stream.sock, "replies out of order")
            return False
        if header.opcode == wire.ERROR:
            code, version, message = wire.decode_error(payload)
            pending._finish(error=errors.make_error(code, message, self.shard, version,
                                                    self.map_version))
            return True
        try:
            pending._finish(pending._decode(header.opcode, payload))
        except errors.ParamdError as failure:
            pending._finish(error=failure)
        except (wire.ProtocolError, ValueError, KeyError, struct.error) as failure:
            pending._finish(error=errors.ParamdError(errors.BAD_FRAME, str(failure), self.shard))
        return True

    # -- failing and closing --------------------------------------------------

    def _fail_locked(self, sock, why):
        """Under _send_lock: fails every request in flight on `sock` and drops
        the socket; the next submit connects again.  Nothing is resent: a
        request that was on the wire may have been applied."""
        if self._socket is sock:
            self._socket = None
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        self._write_queue = collections.deque(w for w in self._write_queue if w[0] is not sock)
        with self._pending_lock:
            if self._stream is None or self._stream.sock is not sock:
                return
            self._stream = None
            pending, self._pending = self._pending, collections.deque()
        for request in pending:
            request._finish(error=errors.ConnectionFailed(errors.CONNECTION, why, self.shard))

    def _fail(self, sock, why):
        try:                       # unblocks a writer stuck on this socket
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._send_lock:
            self._fail_locked(sock, why)

    def close(self):
        with self._send_lock:
            sock = self._socket
            if sock is not None:
                self._fail_locked(sock, "the client closed the connection")
            self._closed = True
            self._send_ready.notify_all()
        for thread in (self._reader, self._writer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(5)

    def in_flight(self):
        with self._pending_lock:
            return len(self._pending)


CODES_PAYLOAD_TOO_LARGE = errors.CODES["payload_too_large"]


def expect(opcode, decoder):
    """A reply decoder that checks the reply's opcode."""
    def decode(got, payload):
        if got != opcode | wire.REPLY:
            raise errors.ParamdError(errors.BAD_FRAME, "expected a reply 0x%02x, got 0x%02x"
                                     % (opcode | wire.REPLY, got))
        return decoder(payload)
    return decode


class HttpConnection:
    """The HTTP/JSON API of one server over a kept-alive connection
    (http.client), one request at a time, safe to share between threads.

    `token` (when not empty) goes in every request's `Authorization: Bearer`
    header.  tls=True speaks HTTPS, verifying the server's certificate with
    `context` (tls_context()); a failed verification raises ConnectFailed
    saying so, never falls back to anything weaker."""

    def __init__(self, host, port, timeout=60.0, shard=None, map_version=None, token="",
                 tls=False, context=None):
        self.host, self.port = host, port
        self.timeout = timeout
        self.shard, self.map_version = shard, map_version
        self.token = check_token(token)
        self.tls = tls
        self._context = (context or tls_context()) if tls else None
        self._lock = threading.Lock()
        self._connection = None

    def _where(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", self.host, self.port)

    def _open(self):
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self._context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, path, body=None, query=None):
        """Returns the parsed JSON reply (None for 204); raises ParamdError."""
        if query:
            path += "?" + urllib.parse.urlencode(query, safe=",:/")
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        with self._lock:
            for attempt in (0, 1):
                fresh = self._connection is None
                if fresh:
                    self._connection = self._open()
                try:
                    self._connection.request(method, path, body=data, headers=headers)
                    response = self._connection.getresponse()
                    raw = response.read()
                    break
                except ssl.SSLCertVerificationError as failure:
                    self._connection.close()
                    self._connection = None
                    raise errors.ConnectFailed(
                        errors.CONNECT, "%s: the server's TLS certificate did not verify (%s); "
                        "give the CA file or the server's self-signed certificate as tls_ca=PATH"
                        % (self._where(), failure.verify_message or failure), self.shard) from None
                except (http.client.RemoteDisconnected, BrokenPipeError,
                        ConnectionResetError) as failure:
                    # A kept-alive connection the server closed while idle:
                    # the request never reached it, so send it once more.
                    self._connection.close()
                    self._connection = None
                    if fresh or attempt:
                        raise errors.ConnectionFailed(errors.CONNECTION, "%s: %s"
                                                      % (self._where(), failure),
                                                      self.shard) from None
                except socket.timeout:
                    self._connection.close()
                    self._connection = None
                    raise errors.Timeout(errors.TIMEOUT, "%s: no reply within %g s"
                                         % (self._where(), self.timeout), self.shard) from None
                except OSError as failure:
                    self._connection.close()
                    self._connection = None
                    kind = errors.ConnectFailed if fresh else errors.ConnectionFailed
                    raise kind(errors.CONNECT if fresh else errors.CONNECTION,
                               "%s: %s" % (self._where(), failure), self.shard) from None
        if response.status == 204 or not raw:
            if response.status >= 400:
                code = {401: errors.UNAUTHORIZED, 403: errors.FORBIDDEN}.get(
                    response.status, errors.CODES["internal"])
                raise errors.make_error(code, "HTTP %d" % response.status, self.shard)
            return None
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise errors.ParamdError(errors.BAD_FRAME, "HTTP %d with a body that is not JSON: %r"
                                     % (response.status, raw[:200]), self.shard) from None
        if response.status >= 400:
            error = parsed.get("error", {}) if isinstance(parsed, dict) else {}
            code = errors.CODES.get(error.get("code"), errors.CODES["internal"])
            failure = errors.make_error(code, error.get("message", "HTTP %d" % response.status),
                                        self.shard, error.get("shard_map_version", 0),
                                        self.map_version)
            if isinstance(failure, errors.Overloaded):
                try:
                    failure.retry_after = float(response.getheader("Retry-After"))
                except (TypeError, ValueError):
                    pass
            raise failure
        return parsed

    def close(self):
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

