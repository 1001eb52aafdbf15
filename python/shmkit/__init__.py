"""shmkit for Python: the same shared-memory segments, locks, channels, maps and topics as shmkit
for Node.js, through the same Rust core.

Timeouts are in seconds (None: no limit), as Python's ``threading`` uses. Errors are the builtin
exceptions where one fits (FileExistsError, FileNotFoundError, PermissionError, TimeoutError,
ValueError, TypeError) or :class:`ShmkitError`, each with a ``code`` attribute: the same code Node
gives (``docs/errors.md``).
"""

from __future__ import annotations

import asyncio
import json as _json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

from . import _native
from ._native import ShmkitError

__all__ = [
    "ERROR_CODES",
    "Channel",
    "Job",
    "LockGuard",
    "Mutex",
    "Segment",
    "SharedMap",
    "ShmkitError",
    "Subscription",
    "Topic",
]

ERROR_CODES: list[str] = list(_native.ERROR_CODES)
_CODECS: list[str] = list(_native.CODECS)

#: The longest one asyncio wait runs on an executor thread before it looks again.
_ASYNC_SLICE = 0.25


def _coded(error: BaseException, code: str) -> BaseException:
    error.code = code  # type: ignore[attr-defined]
    return error


def _codec_id(codec: str) -> int:
    if codec == "v8":
        raise _coded(
            ValueError(
                "the v8 codec is Node's structured-clone format, which Python cannot read: "
                "use 'json', 'string' or 'bytes' for objects shared with Python"
            ),
            "ERR_INVALID_ARG_VALUE",
        )
    if codec not in _CODECS:
        raise _coded(
            ValueError(f"codec must be one of 'bytes', 'string', 'json', not {codec!r}"),
            "ERR_INVALID_ARG_VALUE",
        )
    return _CODECS.index(codec)


def _codec_name(codec_id: int) -> str:
    return _CODECS[codec_id] if 0 <= codec_id < len(_CODECS) else "bytes"


def _encode(codec: str, value: Any) -> bytes:
    """Encodes `value` exactly as Node's codec of the same name does (byte for byte)."""
    if codec == "json":
        try:
            text = _json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise _coded(TypeError(f"the json codec cannot encode {value!r}: {error}"), "ERR_SHM_ENCODE") from error
        return text.encode("utf-8")
    if codec == "string":
        if not isinstance(value, str):
            raise _coded(TypeError(f"a string channel sends str, not {type(value).__name__}"), "ERR_INVALID_ARG_TYPE")
        return value.encode("utf-8")
    if codec == "bytes":
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise _coded(
            TypeError(f"a bytes channel sends bytes, bytearray, memoryview or str, not {type(value).__name__}"),
            "ERR_INVALID_ARG_TYPE",
        )
    raise _coded(ValueError(f"cannot encode with the {codec} codec in Python"), "ERR_INVALID_ARG_VALUE")


def _decode(codec: str, data: bytes) -> Any:
    if codec == "json":
        try:
            return _json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise _coded(ShmkitError(f"a message did not decode as json: {error}"), "ERR_SHM_CORRUPT") from error
    if codec == "string":
        return data.decode("utf-8", errors="replace")
    if codec == "bytes":
        return data
    raise _coded(
        ValueError("a v8 message (Node's structured clone) cannot be read from Python"),
        "ERR_INVALID_ARG_VALUE",
    )


def _ended(error: BaseException) -> bool:
    return getattr(error, "code", None) == "ERR_SHM_CHANNEL_ENDED"


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0 or math.isnan(timeout)):
        raise _coded(ValueError(f"timeout must be seconds >= 0 or None, not {timeout!r}"), "ERR_OUT_OF_RANGE")
    return timeout


class _Handle:
    """What every handle shares: the native object, its name, ``close()`` and ``with``."""

    _native: Any

    @property
    def name(self) -> str:
        return self._native.name

    def close(self) -> None:
        """Closes this handle (unmaps it in this process); the object stays for others."""
        self._native.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _until_ended(recv: Callable[[], Any]) -> Iterator[Any]:
    """Received messages until the stream ended (and was read)."""
    while True:
        try:
            yield recv()
        except ShmkitError as error:
            if _ended(error):
                return
            raise


# ------------------------------------------------------------------------------------- segments


class Segment(_Handle):
    """A named shared-memory segment: ``seg.buf`` is a writable memoryview of its data area, zero
    copy (``numpy.frombuffer(seg.buf, ...)`` works). ``seg.mutex`` is its robust header lock."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.mutex = Mutex(self, -1)

    @classmethod
    def create(
        cls, name: str, size: int, mode: int = 0o600, auto_unlink: bool = False, reserve: bool = True
    ) -> Segment:
        return cls(_native.Segment.create(name, size, mode, auto_unlink, reserve))

    @classmethod
    def open(
        cls, name: str, *, wait: float | None = None, ready_timeout: float | None = None, owner: Any = None
    ) -> Segment:
        return cls(_native.Segment.open(name, wait, ready_timeout, owner))

    @classmethod
    def open_or_create(cls, name: str, size: int, mode: int = 0o600, auto_unlink: bool = False) -> Segment:
        return cls(_native.Segment.open_or_create(name, size, mode, auto_unlink))

    @staticmethod
    def unlink(name: str) -> None:
        _native.Segment.unlink(name, "segment")

    @staticmethod
    def list() -> list[str]:
        return _native.Segment.list()

    @property
    def buf(self) -> memoryview:
        """The data area, writable, zero copy. Release views (``del``, ``view.release()``) before
        ``close()``: closing refuses while one is alive."""
        return memoryview(self._native)

    @property
    def size(self) -> int:
        return self._native.size

    @property
    def created(self) -> bool:
        return self._native.created

    @property
    def closed(self) -> bool:
        return self._native.closed

    def wait(self, offset: int, expected: int, timeout: float | None = None) -> str:
        """Sleeps while the 32-bit word at `offset` equals `expected`, across processes:
        'ok', 'not-equal' or 'timed-out' (like ``Atomics.wait``)."""
        return self._native.wait(offset, expected, _check_timeout(timeout))

    def notify(self, offset: int, count: int | None = None) -> int:
        return self._native.notify(offset, count)

    def __repr__(self) -> str:
        if self.closed:
            return "Segment(closed)"
        return f"Segment(name={self.name!r}, size={self.size})"


class LockGuard:
    """What ``with mutex as guard`` gives: ``guard.owner_died`` says the previous holder died
    holding the lock (the data it protects may be half-updated)."""

    def __init__(self, mutex: Mutex, owner_died: bool) -> None:
        self.mutex = mutex
        self.owner_died = owner_died


class Mutex:
    """A robust inter-process mutex in a segment: the header's (``seg.mutex``) or one placed at a
    64-byte aligned offset of the data area (``Mutex.at(seg, offset)``). Not recursive."""

    #: Bytes a placed mutex takes, and its alignment.
    byte_length = 64

    def __init__(self, segment: Segment, offset: int) -> None:
        self._segment = segment
        self._offset = offset
        self.owner_died = False

    @classmethod
    def at(cls, segment: Segment, offset: int) -> Mutex:
        if offset < 0 or offset % 64:
            raise _coded(ValueError(f"a mutex offset must be a multiple of 64 >= 0, not {offset}"), "ERR_OUT_OF_RANGE")
        return cls(segment, offset)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Takes the lock (as ``threading.Lock.acquire``): False if it timed out or, with
        ``blocking=False``, was busy. ``owner_died`` tells whether the last holder died."""
        if not blocking:
            died = self._segment._native.try_lock(self._offset)
            if died is None:
                return False
            self.owner_died = died
            return True
        try:
            self.owner_died = self._segment._native.lock(self._offset, _check_timeout(timeout))
        except TimeoutError:
            return False
        return True

    def release(self) -> None:
        self._segment._native.unlock(self._offset)

    def __enter__(self) -> LockGuard:
        self.owner_died = self._segment._native.lock(self._offset, None)
        return LockGuard(self, self.owner_died)

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------------------------- channels


class Job:
    """A message taken with ``Channel.take()``: ``ack()`` when done, or ``nack()`` to give it
    back; ``with channel.take() as job:`` gives it back at the end of the block unless it was
    acknowledged."""

    def __init__(self, channel: Channel, job_id: str, deliveries: int, value: Any) -> None:
        self._channel = channel
        self.id = job_id
        self.deliveries = deliveries
        self.value = value
        self._settled = False

    def _settle(self) -> None:
        if self._settled:
            raise _coded(ShmkitError(f"job {self.id} was already acknowledged or given back"), "ERR_SHM_NOT_LOCKED")
        self._settled = True

    def ack(self) -> bool:
        """Removes it for good; False if it was no longer this consumer's (its lease ended and
        another consumer took it)."""
        self._settle()
        return self._channel._native.ack(self.id, self.deliveries)

    def nack(self) -> bool:
        """Gives it back at once; False if it was no longer this consumer's."""
        self._settle()
        return self._channel._native.nack(self.id, self.deliveries)

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._settled:
            self.nack()

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, deliveries={self.deliveries})"


_PEERS_GONE_MODES = {"wait": 0, "end": 1, "raise": 2}


def _peers_gone_mode(mode: str) -> int:
    if mode not in _PEERS_GONE_MODES:
        raise _coded(
            ValueError(f"if_peers_gone must be 'wait', 'end' or 'raise', not {mode!r}"), "ERR_INVALID_ARG_VALUE"
        )
    return _PEERS_GONE_MODES[mode]


class Channel(_Handle):
    """A cross-process message queue (the same ring as Node's ``Channel``): each message goes to
    one receiver, exactly once, in order per sender. Codecs 'bytes', 'string' and 'json'
    interoperate with Node byte for byte."""

    def __init__(self, native: Any, codec: str | None = None) -> None:
        self._native = native
        self.codec = codec or _codec_name(native.codec)
        if self.codec == "v8":
            _codec_id("v8")

    @classmethod
    def create(
        cls, name: str, capacity: int = 1 << 20, codec: str = "bytes", if_peers_gone: str = "wait"
    ) -> Channel:
        """`if_peers_gone` ('wait', 'end' or 'raise'): what this handle's waiting receives (sends)
        do once the channel is empty (full) and every producer (consumer) seen is gone: wait on,
        end (ERR_SHM_CHANNEL_ENDED; senders ERR_SHM_NO_CONSUMERS), or raise
        ERR_SHM_NO_PRODUCERS / ERR_SHM_NO_CONSUMERS. See `peers()`."""
        mode = _peers_gone_mode(if_peers_gone)
        channel = cls(_native.Channel.create(name, capacity, _codec_id(codec)), codec)
        channel._native.set_if_peers_gone(mode)
        return channel

    @classmethod
    def open(
        cls, name: str, codec: str | None = None, ready_timeout: float = 2.0, if_peers_gone: str = "wait"
    ) -> Channel:
        if codec is not None:
            _codec_id(codec)
        mode = _peers_gone_mode(if_peers_gone)
        channel = cls(_native.Channel.open(name, ready_timeout), codec)
        channel._native.set_if_peers_gone(mode)
        return channel

    def take(
        self,
        timeout: float | None = None,
        lease: float = 30.0,
        max_deliveries: int = 5,
        dead_letter: Channel | None = None,
    ) -> Job:
        """Takes the next message to be acknowledged (at least once, where `recv` is exactly
        once): until ``job.ack()`` it stays in the channel's in-flight table, and if this thread
        or process dies, does not ack within `lease` seconds, or calls ``job.nack()``, the next
        ``take`` of any consumer (Python, Node, Rust, in any process) gets it again, with
        ``job.deliveries`` counting; after `max_deliveries` it goes to `dead_letter`. The job
        belongs to the thread that took it. ShmkitError ERR_SHM_CHANNEL_ENDED once the channel
        ended, is drained and nothing is in flight."""
        native_dead = None if dead_letter is None else dead_letter._native
        job_id, deliveries, data = self._native.take(_check_timeout(timeout), lease, max_deliveries, native_dead)
        return Job(self, job_id, deliveries, _decode(self.codec, data))

    def peers(self) -> dict[str, Any]:
        """Who produces into and consumes from the channel, in every process and language: a
        handle counts as a producer from its first send, as a consumer from its first receive,
        until it closes or its process dies. The same report as Node's ``ch.peers()``."""
        peers, (producers, consumers), (producers_gone, consumers_gone), unlisted = self._native.peers()
        return {
            "peers": [
                {"pid": pid, "producer": producer, "consumer": consumer, "state": state}
                for pid, producer, consumer, state in peers
            ],
            "producers": producers,
            "consumers": consumers,
            "producers_gone": producers_gone,
            "consumers_gone": consumers_gone,
            "unlisted": unlisted,
        }

    @staticmethod
    def unlink(name: str) -> None:
        _native.Segment.unlink(name, "channel")

    @property
    def capacity(self) -> int:
        return self._native.capacity

    @property
    def ended(self) -> bool:
        return self._native.ended

    def send(self, message: Any, timeout: float | None = None) -> None:
        """Sends, waiting while the channel is full (TimeoutError after `timeout` seconds)."""
        self._native.send(_encode(self.codec, message), _check_timeout(timeout))

    def try_send(self, message: Any) -> bool:
        return self._native.try_send(_encode(self.codec, message))

    def recv(self, timeout: float | None = None) -> Any:
        """The next message, waiting for one; ShmkitError code ERR_SHM_CHANNEL_ENDED once the
        channel ended and is drained."""
        return _decode(self.codec, self._native.recv(_check_timeout(timeout)))

    def try_recv(self) -> Any | None:
        data = self._native.try_recv()
        return None if data is None else _decode(self.codec, data)

    async def send_async(self, message: Any, timeout: float | None = None) -> None:
        """`send` for asyncio: waits on executor threads, never on the event loop."""
        data = _encode(self.codec, message)
        deadline = None if timeout is None else time.monotonic() + _check_timeout(timeout)
        while not self._native.try_send(data):  # raises ERR_SHM_CHANNEL_ENDED after end()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await self._wait(lambda s: self._native.wait_writable(len(data), s), left, "room in the channel")

    async def recv_async(self, timeout: float | None = None) -> Any:
        """`recv` for asyncio: waits on executor threads, never on the event loop; a cancelled
        receive takes nothing."""
        deadline = None if timeout is None else time.monotonic() + _check_timeout(timeout)
        while True:
            data = self._native.try_recv()
            if data is not None:
                return _decode(self.codec, data)
            if self._native.ended:
                data = self._native.try_recv()
                if data is not None:
                    return _decode(self.codec, data)
                return _decode(self.codec, self._native.recv(0))  # raises ERR_SHM_CHANNEL_ENDED
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await self._wait(self._native.wait_readable, left, "a message")

    async def _wait(self, wait: Callable[[float], bool], left: float | None, what: str) -> None:
        if left is not None and left <= 0:
            raise _coded(TimeoutError(f"Timed out waiting for {what}"), "ETIMEDOUT")
        slice_ = _ASYNC_SLICE if left is None else min(left, _ASYNC_SLICE)
        await asyncio.get_running_loop().run_in_executor(None, wait, slice_)

    def end(self, timeout: float | None = None) -> None:
        """Ends the stream for everyone: receivers drain what is left, then stop."""
        self._native.end(_check_timeout(timeout))

    def __iter__(self) -> Iterator[Any]:
        return _until_ended(self.recv)

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        while True:
            try:
                yield await self.recv_async()
            except ShmkitError as error:
                if _ended(error):
                    return
                raise


# ------------------------------------------------------------------------------------- maps


class SharedMap(_Handle):
    """A key-value map in shared memory (the same map as Node's ``SharedMap``): reads take no
    lock, writes are crash-safe, ``update`` and ``increment`` are atomic across processes."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.codec = _codec_name(native.codec)
        if self.codec == "v8":
            _codec_id("v8")

    @classmethod
    def create(
        cls,
        name: str,
        capacity: int,
        memory: int | None = None,
        codec: str = "json",
        evict: str = "none",
        mode: int = 0o600,
        auto_unlink: bool = False,
    ) -> SharedMap:
        return cls(_native.SharedMap.create(name, capacity, memory, _codec_id(codec), evict, mode, auto_unlink))

    @classmethod
    def open(
        cls, name: str, *, wait: float | None = None, ready_timeout: float | None = None, owner: Any = None
    ) -> SharedMap:
        return cls(_native.SharedMap.open(name, wait, ready_timeout, owner))

    @staticmethod
    def unlink(name: str) -> None:
        _native.Segment.unlink(name, "map")

    @staticmethod
    def _key(key: str) -> bytes:
        if not isinstance(key, str):
            raise _coded(TypeError(f"keys are str, not {type(key).__name__}"), "ERR_INVALID_ARG_TYPE")
        return key.encode("utf-8")

    def get(self, key: str, default: Any = None) -> Any:
        data = self._native.get(self._key(key))
        return default if data is None else _decode(self.codec, data)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Sets `key`, expiring after `ttl` seconds if given."""
        self._native.set(self._key(key), _encode(self.codec, value), _check_timeout(ttl))

    def delete(self, key: str) -> bool:
        return self._native.delete(self._key(key))

    def clear(self) -> None:
        self._native.clear()

    def update(
        self, key: str, function: Callable[[Any], Any], ttl: float | None = None, timeout: float | None = None
    ) -> Any:
        """Replaces the value of `key` with ``function(current)`` under the map's lock, atomically
        across processes; returning None deletes it. Returns the new value."""
        result: list[Any] = [None]

        def apply(current: bytes | None) -> bytes | None:
            value = function(None if current is None else _decode(self.codec, current))
            result[0] = value
            return None if value is None else _encode(self.codec, value)

        self._native.update(self._key(key), apply, _check_timeout(ttl), _check_timeout(timeout))
        return result[0]

    def increment(self, key: str, delta: float = 1) -> int | float:
        """Adds `delta` to the number at `key` (0 if absent), atomically; the new number."""
        return self.update(key, lambda current: (current or 0) + delta)

    def __getitem__(self, key: str) -> Any:
        data = self._native.get(self._key(key))
        if data is None:
            raise KeyError(key)
        return _decode(self.codec, data)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._native.contains(key.encode("utf-8"))

    def __len__(self) -> int:
        return self._native.len()

    def items(self) -> list[tuple[str, Any]]:
        return [(k.decode("utf-8"), _decode(self.codec, v)) for k, v in self._native.entries()]

    def keys(self) -> list[str]:
        return [k.decode("utf-8") for k, _ in self._native.entries()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


# ------------------------------------------------------------------------------------- topics


class Topic(_Handle):
    """Broadcast (the same topic as Node's ``Topic``): every subscriber gets every message
    published after it subscribed, in one order."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.codec = _codec_name(native.codec)
        if self.codec == "v8":
            _codec_id("v8")

    @classmethod
    def create(
        cls,
        name: str,
        capacity: int = 1 << 20,
        codec: str = "json",
        slow: str = "block",
        subscribers: int = 64,
        mode: int = 0o600,
        auto_unlink: bool = False,
    ) -> Topic:
        return cls(_native.Topic.create(name, capacity, _codec_id(codec), slow, subscribers, mode, auto_unlink))

    @classmethod
    def open(
        cls, name: str, *, wait: float | None = None, ready_timeout: float | None = None, owner: Any = None
    ) -> Topic:
        return cls(_native.Topic.open(name, wait, ready_timeout, owner))

    @staticmethod
    def unlink(name: str) -> None:
        _native.Segment.unlink(name, "topic")

    @property
    def ended(self) -> bool:
        return self._native.ended

    def publish(self, message: Any, timeout: float | None = None) -> None:
        self._native.publish(_encode(self.codec, message), _check_timeout(timeout))

    def try_publish(self, message: Any) -> bool:
        return self._native.try_publish(_encode(self.codec, message))

    def subscribe(self) -> Subscription:
        return Subscription(self._native.subscribe(), self.codec)

    def end(self, timeout: float | None = None) -> None:
        self._native.end(_check_timeout(timeout))


class Subscription(_Handle):
    """One subscriber of a topic. ``close()`` unsubscribes."""

    def __init__(self, native: Any, codec: str) -> None:
        self._native = native
        self.codec = codec

    def recv(self, timeout: float | None = None) -> Any:
        """The next message, waiting for one. ShmkitError code ERR_SHM_LAGGED (with ``missed``)
        when publishers lapped this subscriber (overwrite mode), ERR_SHM_CHANNEL_ENDED once the
        topic ended and everything was read."""
        return _decode(self.codec, self._native.recv(_check_timeout(timeout)))

    def try_recv(self) -> Any | None:
        data = self._native.try_recv()
        return None if data is None else _decode(self.codec, data)

    def __iter__(self) -> Iterator[Any]:
        return _until_ended(self.recv)
