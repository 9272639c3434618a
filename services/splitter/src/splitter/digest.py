"""The file's SHA-256 and size, for its deletion receipt, taken while the splitter reads it.

The structural check reads the whole file once, from its first byte to its last, in one
invocation (a check cut short by a timeout starts again from the first byte on the retry), so
the hash is taken over exactly that read: constant memory, no second pass, and correct however
many invocations the emitting that follows takes. Whatever the check did not read (nothing, for
a file it accepts) is read to the end before the digest is given.

Not S3's checksums: an object has a SHA-256 checksum only if its uploader asked for one, and a
multipart upload's is a checksum of its parts' checksums, not the file's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

READ_BYTES = 1 << 20


class _Hashing(io.RawIOBase):
    """A raw stream over another, hashing and counting every byte read through it."""

    def __init__(self, inner: BinaryIO, sha: hashlib._Hash) -> None:
        self._inner = inner
        self._sha = sha
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(len(view))
        n = len(data)
        view[:n] = data
        self._sha.update(data)
        self.size += n
        return n


class FileDigest:
    """Hashes the first stream it opens; `result()` reads that stream to its end and says the
    file's SHA-256 (hex) and size in bytes."""

    def __init__(self, open_stream: Callable[[], AbstractContextManager[BinaryIO]]) -> None:
        self._open_stream = open_stream
        self._sha = hashlib.sha256()
        self._raw: _Hashing | None = None
        self._reader: io.BufferedReader | None = None

    @contextlib.contextmanager
    def _hashed(self) -> Iterator[BinaryIO]:
        with self._open_stream() as inner:
            self._raw = _Hashing(inner, self._sha)
            self._reader = io.BufferedReader(self._raw, READ_BYTES)
            yield self._reader

    def open(self) -> AbstractContextManager[BinaryIO]:
        """The file's stream: hashed the first time, as it is the first time."""
        if self._raw is None:
            return self._hashed()
        return self._open_stream()

    def result(self) -> tuple[str, int]:
        """(SHA-256 hex, size) of the whole file, reading what is left of the first stream."""
        if self._reader is None or self._raw is None:
            raise RuntimeError("the file was not read: nothing to digest")
        while self._reader.read(READ_BYTES):
            pass
        return self._sha.hexdigest(), self._raw.size
