"""Deflated data sets (PS3.5 A.5) inflated into a file, a chunk at a time, under a cap.

pydicom inflates a Deflated data set whole in memory when it reads it, so a few kilobytes sent can
cost gigabytes in whoever reads them: the listener checking a header, a worker analysing the
image. Both inflate here first and read the Explicit VR Little Endian file this writes.
"""

from __future__ import annotations

import copy
import zlib
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian

_CHUNK_BYTES = 1 << 20


class InflateRefused(ValueError):
    """The Deflated data set is malformed where its inflation starts, or inflates past the cap."""


def inflate_to_file(source: Path, target: Path, meta: FileMetaDataset, max_bytes: int | None) -> None:
    """Write ``source``'s Deflated data set to ``target`` as Explicit VR Little Endian, in chunks of
    at most a megabyte, refusing once it passes ``max_bytes``.

    Raises:
        InflateRefused: no file meta group length to find the data set by, or past ``max_bytes``.
        zlib.error: the deflate stream is corrupt.
    """
    with source.open("rb") as stream:
        head = stream.read(144)  # preamble, "DICM", then (0002,0000) File Meta Group Length (Type 1)
        if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
            raise InflateRefused("a Deflated file meta without its group length")
        stream.seek(144 + int.from_bytes(head[140:144], "little"))
        explicit = copy.deepcopy(meta)  # FileMetaDataset(meta) would share its elements
        explicit.TransferSyntaxUID = ExplicitVRLittleEndian
        inflater, written = zlib.decompressobj(-zlib.MAX_WBITS), 0
        with target.open("wb") as out:
            out.write(b"\0" * 128 + b"DICM")
            meta_out = DicomFileLike(out)
            meta_out.is_little_endian, meta_out.is_implicit_VR = True, False
            write_file_meta_info(meta_out, explicit, enforce_standard=False)
            while not inflater.eof:
                compressed = inflater.unconsumed_tail or stream.read(_CHUNK_BYTES)
                if not compressed:
                    break  # a truncated stream: the reader says what is missing
                data = inflater.decompress(compressed, _CHUNK_BYTES)  # at most a chunk at a time
                written += len(data)
                if max_bytes is not None and written > max_bytes:
                    raise InflateRefused(f"the Deflated data set inflates past the {max_bytes} bytes allowed")
                out.write(data)
