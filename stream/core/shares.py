"""A partition's population share as records of the compacted ``rfm-population`` topic.

A share holds the partition's histograms (``stream.core.rfm.Population``); the purchase
model's (purchase days, first day, last day) histogram grows with the population, to about
3.5 MB of JSON per partition at a million customers over four partitions, past what one Kafka
record may hold (1 MB by default, for the broker and for the producer). So a share goes out
as zlib-compressed JSON cut into chunks (of at most 512 KiB in a worker: the outbox's record
budget, ``stream.sinks.outbox.MAX_RECORD_BYTES``), one record per chunk, keyed
``p{partition}/{chunk}``. Each record starts with a JSON header line naming the share
(a fresh id per publication) and the chunk count, so a reader puts a share together only from
chunks of that one publication. Chunk keys the previous publication used and this one does
not get tombstones, so compaction does not keep a stale chunk for ever. Records of the first
format (one plain JSON record keyed ``p{partition}``) are still read.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Iterable

from stream.core.rfm import Population

FORMAT = 2
PENDING_SHARES = 4  # incomplete publications kept per partition (a stale one is dropped after these)


def share_key(partition: int, chunk: int) -> bytes:
    return f"p{partition}/{chunk}".encode()


def legacy_key(partition: int) -> bytes:
    """The key of the first format's single record."""
    return f"p{partition}".encode()


def share_records(partition: int, population: Population, live: Iterable[bytes], max_chunk: int
                  ) -> list[tuple[bytes, bytes | None]]:
    """The (key, value) records of one publication, in the order to send: its chunks of at most
    ``max_chunk`` compressed bytes, each behind its header line, then a tombstone (value None)
    for each key of ``live`` (the partition's keys holding a value on the topic:
    :meth:`ShareReader.live`) that this publication does not use. Send them in order to the
    topic's one partition.

    >>> reader = ShareReader()
    >>> for key, value in share_records(2, Population(days={19000: 3}, size=3), (), max_chunk=40):
    ...     share = reader.add(key, value)
    >>> share[0], share[1].size, sorted(reader.live(2))
    (2, 3, [b'p2/0', b'p2/1', b'p2/2'])
    >>> [(key, value is None) for key, value in share_records(2, Population(), reader.live(2), 512 * 1024)]
    [(b'p2/0', False), (b'p2/1', True), (b'p2/2', True)]
    """
    body = zlib.compress(json.dumps(population.to_json(), separators=(",", ":")).encode(), 6)
    pieces = [body[at:at + max_chunk] for at in range(0, len(body), max_chunk)]
    share = uuid.uuid4().hex
    records: list[tuple[bytes, bytes | None]] = []
    for chunk, piece in enumerate(pieces):
        header = {"format": FORMAT, "partition": partition, "share": share, "chunk": chunk, "chunks": len(pieces)}
        records.append((share_key(partition, chunk), json.dumps(header).encode() + b"\n" + piece))
    used = {key for key, _ in records}
    records += [(key, None) for key in sorted(set(live) - used)]
    return records


class ShareReader:
    """Puts shares together from the topic's records, read in order. :meth:`add` returns
    (partition, population) when a record completes a share, else None. Raises ``ValueError``
    on a record it cannot read (the caller logs and skips it)."""

    def __init__(self) -> None:
        # partition -> share id -> chunk -> bytes, the oldest publication first
        self.pending: dict[int, OrderedDict[str, dict[int, bytes]]] = {}
        self._live: dict[int, set[bytes]] = {}  # partition -> its keys that hold a value

    def live(self, partition: int) -> set[bytes]:
        """The partition's keys holding a value as of the records read (a publisher tombstones
        those its publication does not use)."""
        return set(self._live.get(partition, ()))

    def add(self, key: bytes | None, value: bytes | None) -> tuple[int, Population] | None:
        of_partition = _partition_of(key)
        if key is not None and of_partition is not None:
            keys = self._live.setdefault(of_partition, set())
            if value is None:
                keys.discard(key)
            else:
                keys.add(key)
        if value is None:  # a tombstone of a stale key
            return None
        if key is not None and b"/" not in key:  # the first format: the whole share in one record
            data = json.loads(value)
            return int(data["partition"]), Population.from_json(data["population"])
        line, _, piece = value.partition(b"\n")
        header = json.loads(line)
        if header.get("format") != FORMAT:
            raise ValueError(f"population share record of unknown format {header.get('format')!r} (key {key!r})")
        partition, share, chunks = int(header["partition"]), str(header["share"]), int(header["chunks"])
        shares = self.pending.setdefault(partition, OrderedDict())
        pieces = shares.setdefault(share, {})
        pieces[int(header["chunk"])] = piece
        if len(pieces) < chunks:
            while len(shares) > PENDING_SHARES:
                shares.popitem(last=False)
            return None
        del shares[share]
        try:
            body = zlib.decompress(b"".join(pieces[n] for n in range(chunks)))
        except zlib.error as exc:
            raise ValueError(f"population share {share} of partition {partition} does not decompress: {exc}") from exc
        return partition, Population.from_json(json.loads(body))


def _partition_of(key: bytes | None) -> int | None:
    """The partition a key is for (``p3`` or ``p3/0``: 3); None for any other key."""
    if not key or not key.startswith(b"p"):
        return None
    number = key[1:].split(b"/", 1)[0]
    return int(number) if number.isdigit() else None
