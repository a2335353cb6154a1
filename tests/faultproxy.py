"""A small threaded TCP fault proxy, put between the worker and a real server in tests.

    with FaultProxy(dovecot.port) as proxy:
        inbox = ImapInbox(replace(dovecot, port=proxy.port))
        proxy.cut_after(1500)                 # the next connection dies after 1,500 server bytes
        proxy.stall(after=0)                  # server bytes stop flowing; sockets stay open
        proxy.delay(0.5)                      # every server chunk waits 0.5 s
        proxy.drop_reply_after(b"\r\n.\r\n")  # once the client sent this, close before the reply
        proxy.stall_reply_after(b"\r\n.\r\n") # ... or hold the reply back instead
        proxy.refuse()                        # accept, then close at once
        proxy.garble(b"(UID 7 BODY[] ", b'(UID 7 BODY[] "')  # rewrite server bytes, every time
        proxy.heal()                          # back to a plain pipe

A fault applies to connections opened after it is set and to the ones
already open; the one-shot faults (`once=True`) clear themselves the first
time they fire, so the retry that follows goes through. Only loopback
addresses are ever used. `triggered` counts the faults that fired.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

CHUNK = 4096


@dataclass
class Fault:
    kind: str = "none"  # none, cut, stall, delay, drop_reply, stall_reply, refuse, garble
    after: int = 0  # cut / stall: server bytes let through first on each connection
    seconds: float = 0.0  # delay
    marker: bytes = b""  # drop_reply / stall_reply: what the client sends before the reply we hit;
    # garble: the server bytes replaced by `replacement`
    replacement: bytes = b""
    once: bool = True


class _Link:
    """One proxied connection: client <-> upstream, with its byte counts."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.down_bytes = 0
        self.tail = b""  # the last bytes the client sent, to spot a marker across chunks
        self.armed: Fault | None = None  # a reply fault waiting for the server's next bytes
        self.held = b""  # garble: server bytes that may begin the marker, kept for the next chunk
        self.closed = threading.Event()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def pump_up(self) -> None:
        """Client -> server; watches for the marker of a reply fault."""
        try:
            while not self.closed.is_set():
                data = self.client.recv(CHUNK)
                if not data:
                    break
                fault = self.proxy.fault
                if fault.kind in ("drop_reply", "stall_reply") and fault.marker:
                    self.tail = (self.tail + data)[-(len(fault.marker) + CHUNK):]
                    if fault.marker in self.tail:
                        self.armed = fault
                        self.proxy._fired(fault)
                        self.tail = b""
                self.upstream.sendall(data)
        except OSError:
            pass
        self.close()

    def pump_down(self) -> None:
        """Server -> client, where the cut, stall, delay and reply faults act."""
        try:
            while not self.closed.is_set():
                data = self.upstream.recv(CHUNK)
                if not data:
                    break
                if self.armed is not None:
                    if self.armed.kind == "drop_reply":
                        break
                    self._hold(lambda: True)
                    continue
                fault = self.proxy.fault
                if fault.kind == "cut":
                    room = fault.after - self.down_bytes
                    if len(data) >= room:
                        self.client.sendall(data[: max(room, 0)])
                        self.proxy._fired(fault)
                        break
                elif fault.kind == "stall":
                    room = max(fault.after - self.down_bytes, 0)
                    if len(data) > room:
                        self.client.sendall(data[:room])
                        self.down_bytes += room
                        self.proxy._fired(fault)
                        data = data[room:]
                        self._hold(lambda: self.proxy.fault.kind == "stall")
                elif fault.kind == "delay":
                    time.sleep(fault.seconds)
                elif fault.kind == "garble":
                    data = self._garble(fault, data)
                if self.closed.is_set():
                    break
                self.client.sendall(data)
                self.down_bytes += len(data)
        except OSError:
            pass
        self.close()

    def _garble(self, fault: Fault, data: bytes) -> bytes:
        """Replace the marker in the server's stream, across chunk boundaries: a chunk's end that
        could begin the marker waits for the next chunk (a complete reply line never does)."""
        data = self.held + data
        if fault.marker in data:
            self.proxy._fired(fault)
            data = data.replace(fault.marker, fault.replacement)
        self.held = b""
        for k in range(min(len(fault.marker) - 1, len(data)), 0, -1):
            if data.endswith(fault.marker[:k]):
                data, self.held = data[:-k], data[-k:]
                break
        return data

    def _hold(self, still: Callable[[], bool]) -> None:
        while still() and not self.closed.is_set() and not self.proxy.stopped.is_set():
            time.sleep(0.02)


class FaultProxy:
    """Listens on a free loopback port and forwards to `target_port`, with faults on demand."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.fault = Fault()
        self.triggered = 0
        self.connections = 0
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)  # so stop() is not left waiting in accept()
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    # -- faults -------------------------------------------------------------
    def cut_after(self, nbytes: int, *, once: bool = True) -> None:
        self.fault = Fault("cut", after=nbytes, once=once)

    def stall(self, *, after: int = 0) -> None:
        self.fault = Fault("stall", after=after, once=False)

    def delay(self, seconds: float) -> None:
        self.fault = Fault("delay", seconds=seconds, once=False)

    def drop_reply_after(self, marker: bytes, *, once: bool = True) -> None:
        self.fault = Fault("drop_reply", marker=marker, once=once)

    def stall_reply_after(self, marker: bytes, *, once: bool = True) -> None:
        self.fault = Fault("stall_reply", marker=marker, once=once)

    def garble(self, marker: bytes, replacement: bytes) -> None:
        self.fault = Fault("garble", marker=marker, replacement=replacement, once=False)

    def refuse(self, *, once: bool = False) -> None:
        self.fault = Fault("refuse", once=once)

    def heal(self) -> None:
        self.fault = Fault()
        for link in list(self._links):
            link.armed = None

    def _fired(self, fault: Fault) -> None:
        with self._lock:
            self.triggered += 1
            if fault.once and self.fault is fault:
                self.fault = Fault()

    # -- plumbing -------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        try:
            self._listener.close()
        except OSError:
            pass
        for link in list(self._links):
            link.close()
        self._thread.join(timeout=5)

    def close_all(self) -> None:
        """Drop every open connection (the server "goes away" mid-session)."""
        for link in list(self._links):
            link.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self.connections += 1
            fault = self.fault
            if fault.kind == "refuse":
                self._fired(fault)
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(self, client, upstream)
            self._links = [lk for lk in self._links if not lk.closed.is_set()] + [link]
            threading.Thread(target=link.pump_up, daemon=True).start()
            threading.Thread(target=link.pump_down, daemon=True).start()
