"""paramd's error codes (include/paramd/paramd.h, PARAMD_ERROR_MAP) and the
exceptions the Python client raises.

Every failure is a ParamdError with the numeric `code`, its stable `name`
("model_not_found") and the server's `message`; `shard` names the shard that
answered when the client talks to several.  Subclasses let callers catch the
cases they handle: ModelNotFound, ModelExists, NotOwner and its subclass
StaleShardMap, Timeout, ConnectFailed, ConnectionFailed, Unauthorized,
Forbidden and Overloaded.
"""

# code -> (name, default message), exactly as PARAMD_ERROR_MAP.
ERRORS = {
    -1: ("bad_json", "request body is not valid JSON"),
    -2: ("bad_request", "request is malformed"),
    -3: ("model_not_found", "no such model"),
    -4: ("model_exists", "model already exists"),
    -5: ("tensor_not_found", "no such tensor in the model"),
    -6: ("unknown_optimizer", "unknown optimizer name"),
    -7: ("bad_hyperparameter", "hyperparameter unknown or out of range"),
    -8: ("shape_mismatch", "data length does not match the tensor shape"),
    -9: ("non_finite", "value is NaN or infinite"),
    -10: ("payload_too_large", "request body exceeds the configured limit"),
    -11: ("out_of_memory", "not enough memory"),
    -12: ("not_found", "no such resource"),
    -13: ("method_not_allowed", "method not allowed on this resource"),
    -14: ("bad_name", "name is empty, too long or has invalid characters"),
    -15: ("bad_encoding", "data encoding is invalid"),
    -16: ("internal", "internal error"),
    -17: ("unavailable", "server is shutting down"),
    -18: ("bad_frame", "binary protocol frame is malformed"),
    -19: ("hello_required", "the first request must be HELLO"),
    -20: ("unsupported_version", "no protocol version in common"),
    -21: ("bad_range", "range is outside the tensor or does not cover it"),
    -22: ("not_owner", "this shard does not hold that tensor (stale shard map?)"),
    -23: ("timeout", "timed out: the server did not answer in time, or other workers did not push"),
    -24: ("connect_failed", "cannot connect to the server"),
    -25: ("connection_error", "the connection to the server failed or was closed"),
    -26: ("invalid_argument", "an argument of a client library call is invalid"),
    -27: ("checkpoint_failed", "a checkpoint could not be written or read"),
    -28: ("checkpoint_corrupt", "a checkpoint file is damaged or inconsistent"),
    -29: ("unauthorized", "a valid bearer token is required"),
    -30: ("forbidden", "the token's role does not allow this request"),
    -31: ("overloaded", "the server is at a configured limit; retry later"),
}
CODES = {name: code for code, (name, _) in ERRORS.items()}

BAD_REQUEST = CODES["bad_request"]
MODEL_NOT_FOUND = CODES["model_not_found"]
MODEL_EXISTS = CODES["model_exists"]
TENSOR_NOT_FOUND = CODES["tensor_not_found"]
SHAPE_MISMATCH = CODES["shape_mismatch"]
BAD_FRAME = CODES["bad_frame"]
NOT_OWNER = CODES["not_owner"]
TIMEOUT = CODES["timeout"]
CONNECT = CODES["connect_failed"]
CONNECTION = CODES["connection_error"]
INVALID_ARGUMENT = CODES["invalid_argument"]
UNAUTHORIZED = CODES["unauthorized"]
FORBIDDEN = CODES["forbidden"]
OVERLOADED = CODES["overloaded"]


def error_name(code):
    return ERRORS.get(code, ("unknown_error_%d" % code, ""))[0]


class ParamdError(Exception):
    """A request that failed: the server's (or the client's own) code, name
    and message.  `shard` is the shard id that answered, or None."""

    def __init__(self, code, message, shard=None, shard_map_version=0):
        self.code = code
        self.name = error_name(code)
        self.message = message
        self.shard = shard
        self.shard_map_version = shard_map_version
        where = "" if shard is None else "shard %d: " % shard
        super().__init__("%s%s: %s" % (where, self.name, message))


class ModelNotFound(ParamdError):
    pass


class ModelExists(ParamdError):
    pass


class NotOwner(ParamdError):
    """A shard does not hold a tensor (or range) the client sent it, although
    the client's shard map has the same version as the server's."""


class StaleShardMap(NotOwner):
    """The server's shard map is not the client's: reload the map (or, for a
    single-address client of a sharded service, use the map) and retry."""

    def __init__(self, message, shard, client_version, server_version):
        self.client_version = client_version
        self.server_version = server_version
        mine = "no shard map" if client_version is None else "shard map version %d" % client_version
        text = ("stale shard map: the client has %s, the server has shard map version %d (%s)"
                % (mine, server_version, message))
        super().__init__(NOT_OWNER, text, shard, server_version)


class Timeout(ParamdError):
    pass


class ConnectFailed(ParamdError):
    pass


class ConnectionFailed(ParamdError):
    pass


class Unauthorized(ParamdError):
    """The server has tokens (--token-file) and the request brought none, or
    one the server does not know (HTTP 401; over the binary protocol HELLO
    is refused and the server closes the connection)."""


class Forbidden(ParamdError):
    """The token is valid, but its role (read < write < admin) is below what
    the request needs (HTTP 403)."""


class Overloaded(ParamdError):
    """The server is at a configured limit (for example --max-waiting-pushes);
    nothing changed: retry later (HTTP 503; `retry_after` holds the seconds
    of its Retry-After header when the reply came over HTTP, else None)."""

    retry_after = None


_CLASSES = {MODEL_NOT_FOUND: ModelNotFound, MODEL_EXISTS: ModelExists, TIMEOUT: Timeout,
            CONNECT: ConnectFailed, CONNECTION: ConnectionFailed, UNAUTHORIZED: Unauthorized,
            FORBIDDEN: Forbidden, OVERLOADED: Overloaded}


def make_error(code, message, shard=None, shard_map_version=0, client_map_version=None):
    """The exception for an error reply.  not_owner becomes StaleShardMap
    when the versions differ (or the client has no map), NotOwner when they
    agree."""
    if code == NOT_OWNER:
        if client_map_version is None or client_map_version != shard_map_version:
            return StaleShardMap(message, shard, client_map_version, shard_map_version)
        return NotOwner(code, message, shard, shard_map_version)
    return _CLASSES.get(code, ParamdError)(code, message, shard, shard_map_version)
