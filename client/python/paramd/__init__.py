"""paramd - client for the paramd parameter server.

`paramd.protocol` encodes and decodes the binary protocol (standard library
only).
"""

__version__ = "0.1.0"
