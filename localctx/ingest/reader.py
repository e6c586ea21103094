"""Read one walked file: the bytes (for the content hash), the text, or why it was refused.

A file may change or disappear between the walk and the read; what was read is what gets
hashed and indexed, and a file that grew past the size limit is refused then. The file is
opened with O_NOFOLLOW (a symlink swapped in after the walk is refused, never followed) and
O_NONBLOCK (a FIFO swapped in cannot hang the ingest), and must still be a regular file once
open. Text that is not UTF-8 is decoded with replacement characters and flagged (counted as
`non_utf8`); text that is mostly replacement characters is binary after all. A key or token in
the content (rules.secret_in) refuses the file unless `--allow-secret` names it.

Files over STREAM_BYTES (only when --max-file-bytes is raised past its 1 MiB default) are
read by `stream_source` in blocks, never whole: a 50 MB file cost 819 MB of RSS read at once
(bytes, text, chunks, identifiers); streamed it is cut into line windows as it is read.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from localctx.ingest.rules import (
    SECRET_OVERLAP,
    SNIFF_BYTES,
    Skip,
    is_allowed,
    mostly_undecodable,
    secret_in,
    skip_by_content,
)
from localctx.ingest.walker import SourceFile

STREAM_BYTES = 2 << 20  # above this a file is streamed (the default limit is 1 MiB)
BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class SourceText:
    file: SourceFile
    sha: str  # blake2b-128 of the bytes read: the key that makes unchanged files free
    size: int
    text: str
    non_utf8: bool


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def open_source(file: SourceFile) -> int | Skip:
    """A read-only descriptor of a regular file, or why it cannot be read."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(file.path, flags)
    except FileNotFoundError:
        return Skip.VANISHED
    except IsADirectoryError:
        return Skip.NOT_REGULAR
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the walk saw a file; a link is there now
            return Skip.SYMLINK_OUTSIDE
        return Skip.UNREADABLE
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return Skip.NOT_REGULAR
    except OSError:
        os.close(fd)
        return Skip.UNREADABLE
    return fd


def read_source(
    file: SourceFile, max_file_bytes: int, allow_secrets: tuple[str, ...] = ()
) -> SourceText | Skip:
    fd = open_source(file)
    if isinstance(fd, Skip):
        return fd
    try:
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(max_file_bytes + 1)
    except OSError:
        return Skip.UNREADABLE
    if len(data) > max_file_bytes:
        return Skip.TOO_LARGE
    if not data:
        return Skip.EMPTY
    name = file.relpath.rsplit("/", 1)[-1]
    reason = skip_by_content(name, data[:SNIFF_BYTES])
    if reason is not None:
        return reason
    if not is_allowed(file.relpath, allow_secrets) and secret_in(data) is not None:
        return Skip.SECRET_CONTENT
    non_utf8 = False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        if mostly_undecodable(text):
            return Skip.BINARY
        non_utf8 = True
    if text.startswith("\ufeff"):
        text = text[1:]
    return SourceText(file, content_hash(data), len(data), text, non_utf8)


class Refused(Exception):
    """A streamed file turned out to be one to skip (after some of it was read)."""

    def __init__(self, reason: Skip) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass
class StreamedSource:
    """Filled in while `pieces()` is consumed: the hash and flags of the bytes read."""

    file: SourceFile
    max_file_bytes: int
    allow_secrets: tuple[str, ...] = ()
    sha: str = ""
    size: int = 0
    non_utf8: bool = False
    _replaced: int = field(default=0, repr=False)
    _chars: int = field(default=0, repr=False)
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("strict"), repr=False
    )

    def pieces(self) -> Iterator[str]:
        """The text in pieces of whole lines (~BLOCK_BYTES each). Raises Refused when the
        file must be skipped (binary, generated, a secret, grown past the limit)."""
        fd = open_source(self.file)
        if isinstance(fd, Skip):
            raise Refused(fd)
        digest = hashlib.blake2b(digest_size=16)
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        check_secrets = not is_allowed(self.file.relpath, self.allow_secrets)
        tail, carry, first = b"", "", True
        with os.fdopen(fd, "rb") as fh:
            while True:
                try:
                    block = fh.read(BLOCK_BYTES)
                except OSError:
                    raise Refused(Skip.UNREADABLE) from None
                final = not block
                self.size += len(block)
                if self.size > self.max_file_bytes:
                    raise Refused(Skip.TOO_LARGE)
                digest.update(block)
                if first:
                    if final:
                        raise Refused(Skip.EMPTY)
                    name = self.file.relpath.rsplit("/", 1)[-1]
                    reason = skip_by_content(name, block[:SNIFF_BYTES])
                    if reason is not None:
                        raise Refused(reason)
                    block = block.removeprefix(b"\xef\xbb\xbf")  # a BOM is not text
                    first = False
                if check_secrets and secret_in(tail + block) is not None:
                    raise Refused(Skip.SECRET_CONTENT)
                tail = block[-SECRET_OVERLAP:]
                text = carry + self._decode(block, final)
                if final:
                    if text:
                        yield text
                    break
                cut = text.rfind("\n") + 1
                carry = text[cut:]
                if cut:
                    yield text[:cut]
        if self._replaced > 16 and self._replaced * 10 > self._chars:
            raise Refused(Skip.BINARY)
        self.sha = digest.hexdigest()

    def _decode(self, block: bytes, final: bool) -> str:
        """Strict UTF-8 until the first bad byte, then with replacement characters (counted,
        so a file that is mostly undecodable is binary after all)."""
        try:
            text = self._decoder.decode(block, final)
        except UnicodeDecodeError:  # the decoder kept its state: decode the block again
            self.non_utf8 = True
            state = self._decoder.getstate()
            self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self._decoder.setstate(state)
            text = self._decoder.decode(block, final)
        if self.non_utf8:
            self._replaced += text.count("\ufffd")
        self._chars += len(text)
        return text


def is_streamed(file: SourceFile) -> bool:
    return file.size > STREAM_BYTES
