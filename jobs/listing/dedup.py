"""One row per video_uri in a manifest's listing (folder and prefix listings are unique by
construction, inventory keys unique per report).

A hash shuffle of the rows on ``video_uri`` (``repartition(keys=...)``) and a per-block pyarrow
group-by. Cost: one all-to-all exchange of the manifest's rows (~100 bytes each) through the
object store, a barrier before the stat stage; it spills to disk when larger than object-store memory.
"""
from __future__ import annotations

import pyarrow as pa


def dedup(ds):
    """One row per video_uri (the first): hash-shuffle on the key, then a group-by inside each block.

    Ray's own map_groups relies on the same fact: after a key repartition, a block given
    whole (batch_size=None) holds every row of its keys. Under a sort-based shuffle strategy
    (RAY_DATA_DEFAULT_SHUFFLE_STRATEGY) a sort on the key does the co-location instead.
    """
    from ray.data.context import ShuffleStrategy

    hashed = ds.context.shuffle_strategy in (ShuffleStrategy.HASH_SHUFFLE, ShuffleStrategy.SHUFFLE_V2,
                                             ShuffleStrategy.GPU_SHUFFLE)
    shuffled = ds.repartition(num_partitions(), keys=["video_uri"]) if hashed else ds.sort("video_uri")
    return shuffled.map_batches(dedup_block, batch_size=None, batch_format="pyarrow")


def num_partitions() -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 2)) if ray.is_initialized() else 2
    return max(2, min(2 * cpus, 200))


def dedup_block(table: pa.Table) -> pa.Table:
    if table.num_rows < 2:
        return table
    indexed = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    first = indexed.group_by("video_uri", use_threads=False).aggregate([("_i", "min")])["_i_min"]
    return table.take(first)
