"""paramd - Python client of the paramd parameter server.

    import paramd
    client = paramd.Client("127.0.0.1:8471")          # or shard_map="shard-map.json"
    client.create("m", {"optimizer": {"name": "AdamW", "lr": 1e-3},
                        "tensors": [{"name": "w", "shape": [4]}]})
    result = client.pushpull("m", {"w": numpy.ones(4)})
    result.weights["w"]

paramd.Client speaks the binary protocol (paramd.protocol) or HTTP, routes
tensors over the shards of a shard map (paramd.sharding), pipelines
requests, and raises paramd.ParamdError (paramd.errors).
paramd.torch.RemoteOptimizer is a torch.optim.Optimizer whose update runs on
the server (it imports torch; nothing else here does).  docs/PYTHON.md is
the guide.  Needs the standard library and numpy.
"""

__version__ = "0.1.0"

from .errors import (ConnectFailed, ConnectionFailed, Forbidden, ModelExists, ModelNotFound,
                     NotOwner, Overloaded, ParamdError, StaleShardMap, Timeout, Unauthorized)
from .client import AUTO, Client, PushResult, TensorPlacement, Weights, total_norm
from .sharding import ShardMap

__all__ = ["AUTO", "Client", "ConnectFailed", "ConnectionFailed", "Forbidden", "ModelExists",
           "ModelNotFound", "NotOwner", "Overloaded", "ParamdError", "PushResult", "ShardMap",
           "StaleShardMap", "TensorPlacement", "Timeout", "Unauthorized", "Weights", "total_norm"]
