/*
 * protocol.h - constants of paramd's binary protocol, version 1.
 *
 * proto/PROTOCOL.md is the byte-level specification; this header names its
 * numbers for C programs.  Everything on the wire is little-endian.  These
 * values are part of the wire contract: never renumber, only append.
 */
#ifndef PARAMD_PROTOCOL_H
#define PARAMD_PROTOCOL_H

#ifdef __cplusplus
extern "C" {
#endif

#define PARAMD_PROTOCOL_VERSION 1

/* Every frame starts with a 16-byte header:
 *   bytes 0-1  magic "PD" (0x50 0x44)
 *   byte  2    protocol version
 *   byte  3    opcode (replies have PARAMD_OP_REPLY set)
 *   bytes 4-7  payload length (u32, a multiple of 8)
 *   bytes 8-15 request id (u64), echoed in the reply */
#define PARAMD_FRAME_HEADER_SIZE 16
#define PARAMD_FRAME_MAGIC_0 0x50
#define PARAMD_FRAME_MAGIC_1 0x44
/* Variable-length fields are padded to this many bytes. */
#define PARAMD_FRAME_ALIGNMENT 8

/* Requests.  A reply's opcode is the request's | PARAMD_OP_REPLY. */
typedef enum paramd_opcode {
    PARAMD_OP_HELLO = 0x01,
    PARAMD_OP_LOOKUP = 0x02,
    PARAMD_OP_PUSH = 0x03,
    PARAMD_OP_PULL = 0x04,
    PARAMD_OP_PUSHPULL = 0x05,
    PARAMD_OP_STATS = 0x06,
    PARAMD_OP_ECHO = 0x07,
    PARAMD_OP_CREATE = 0x08,
    PARAMD_OP_DELETE = 0x09,
    PARAMD_OP_LIST = 0x0A,
    PARAMD_OP_REPLY = 0x80,
    PARAMD_OP_ERROR = 0xFF, /* a reply: the request failed */
} paramd_opcode;

/* Element types of float data on the wire. */
typedef enum paramd_dtype {
    PARAMD_DTYPE_FLOAT32 = 1,
    PARAMD_DTYPE_FLOAT16 = 2,
    PARAMD_DTYPE_BFLOAT16 = 3,
} paramd_dtype;

/* PUSH and PUSHPULL request flags. */
#define PARAMD_PUSH_HAS_LOSS (1u << 0)
#define PARAMD_PUSH_HAS_GRAD_NORM (1u << 1)
#define PARAMD_PUSH_HAS_VERSION (1u << 2) /* the model step the gradients were computed at */

/* PUSH and PUSHPULL reply flags. */
#define PARAMD_PUSH_SKIPPED (1u << 0)     /* non-finite gradients: the step was skipped */
#define PARAMD_PUSH_ACCUMULATED (1u << 1) /* gradients accumulated; no step yet */
#define PARAMD_PUSH_DROPPED (1u << 2)     /* sync mode: too late for its step, not applied */
#define PARAMD_PUSH_EVALUATE (1u << 3)    /* LBFGS, SAM's ascent: the weights are the next point
                                             to evaluate, the step goes on */

#ifdef __cplusplus
}
#endif
#endif /* PARAMD_PROTOCOL_H */
