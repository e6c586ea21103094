"""Read one walked file: the bytes (for the content hash), the text, or why it was refused.

A file may change or disappear between the walk and the read; what was read is what gets
hashed and indexed, and a file that grew past the size limit is refused then. Text that is not
UTF-8 is decoded with replacement characters and flagged (counted as `non_utf8`); text that is
mostly replacement characters is binary after all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from localctx.ingest.rules import SNIFF_BYTES, Skip, mostly_undecodable, skip_by_content
from localctx.ingest.walker import SourceFile


@dataclass(frozen=True)
class SourceText:
    file: SourceFile
    sha: str  # blake2b-128 of the bytes read: the key that makes unchanged files free
    size: int
    text: str
    non_utf8: bool


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_source(file: SourceFile, max_file_bytes: int) -> SourceText | Skip:
    try:
        with open(file.path, "rb") as fh:
            data = fh.read(max_file_bytes + 1)
    except FileNotFoundError:
        return Skip.VANISHED
    except IsADirectoryError:
        return Skip.NOT_REGULAR
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
