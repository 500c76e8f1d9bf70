"""Which partition owns a customer: where producers keying by customer id put their events
(Kafka's default partitioner, murmur2 of the id), so where the customer's state lives."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


def owner_partition(customer_id: str, partitions: int) -> int:
    """
    >>> owner_partition("c42", 4) == owner_partition("c42", 4) and 0 <= owner_partition("c42", 4) < 4
    True
    """
    every = range(partitions)  # indexable, as the partitioner needs, without building a list
    return int(_partitioner(customer_id.encode(), every, every))  # type: ignore[arg-type]
