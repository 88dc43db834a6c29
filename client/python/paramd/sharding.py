"""Shard maps and tensor placement, exactly as proto/shard_map.c computes
them (docs/SHARDING.md is the specification).

    shard_map = ShardMap.load("cluster.json")
    shard_map.owner("mlp", "fc1.weight")        # -> shard id of a whole tensor
    shard_map.placement("mlp", "emb", 10**8)     # -> [(shard, offset, count), ...]
"""

import json

MASK = (1 << 64) - 1
DEFAULT_SPLIT_THRESHOLD = 4 << 20


def mix(x):
    """SplitMix64's finaliser."""
    x &= MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    x ^= x >> 31
    return x


def fnv1a(data, value=0xCBF29CE484222325):
    for byte in data:
        value ^= byte
        value = (value * 0x100000001B3) & MASK
    return value


def tensor_hash(model, tensor):
    return fnv1a((model + "/" + tensor).encode("utf-8"))


class Shard:
    def __init__(self, shard_id, http=None, tcp=None):
        self.id, self.http, self.tcp = shard_id, http, tcp

    def __repr__(self):
        return "Shard(%d, http=%r, tcp=%r)" % (self.id, self.http, self.tcp)


class ShardMap:
    def __init__(self, version, shards, split_threshold=DEFAULT_SPLIT_THRESHOLD):
        self.version = version
        self.split_threshold = split_threshold
        self.shards = sorted(shards, key=lambda s: s.id)
        if [s.id for s in self.shards] != list(range(len(self.shards))):
            raise ValueError("shard ids must be 0 to %d, each once" % (len(self.shards) - 1))

    @classmethod
    def from_json(cls, document):
        if isinstance(document, (str, bytes)):
            document = json.loads(document)
        shards = [Shard(entry["id"], entry.get("http"), entry.get("tcp"))
                  for entry in document["shards"]]
        return cls(document["version"], shards,
                   document.get("split_threshold", DEFAULT_SPLIT_THRESHOLD))

    @classmethod
    def load(cls, path):
        with open(path) as handle:
            return cls.from_json(json.load(handle))

    def to_json(self):
        return {"version": self.version, "split_threshold": self.split_threshold,
                "shards": [dict({"id": s.id}, **({"http": s.http} if s.http else {}),
                                **({"tcp": s.tcp} if s.tcp else {})) for s in self.shards]}

    def owner(self, model, tensor):
        """The shard that holds a whole tensor (rendezvous hashing)."""
        h = tensor_hash(model, tensor)
        best, owner = None, 0
        for shard in self.shards:
            score = mix(h ^ mix(shard.id + 1))
            if best is None or score > best:
                best, owner = score, shard.id
        return owner

    def splits(self, count):
        return len(self.shards) > 1 and count > self.split_threshold

    def ranges(self, count):
        """[(shard, offset, length)] of a split tensor."""
        n = len(self.shards)
        return [(k, count * k // n, count * (k + 1) // n - count * k // n) for k in range(n)]

    def placement(self, model, tensor, count, whole=False):
        """Where a tensor of `count` elements lives: [(shard, offset, length)].
        whole=True for tensors whose optimizer needs all of them (LAMB,
        LARS, Adafactor, Muon), which are never split."""
        if not whole and self.splits(count):
            return self.ranges(count)
        return [(self.owner(model, tensor), 0, count)]
