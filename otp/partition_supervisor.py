"""Partition supervisor lookups (Elixir's ``PartitionSupervisor``):
``otp.partition_supervisor.whereis(name, key)``, ``partition_of``,
``partitions``, ``children``; start one with ``otp.PartitionSupervisor``."""

from ._partition_supervisor import PartitionSupervisor, children, default_partitions, partition_of, partitions, whereis

__all__ = ["PartitionSupervisor", "whereis", "partition_of", "partitions", "children", "default_partitions"]
