/*
 * base64.h - standard base64 (RFC 4648, with padding), pure functions.
 *
 * No allocation and no I/O: the caller provides both buffers.  The decoder
 * never reads past `length` input bytes nor writes past `capacity` output
 * bytes.
 */
#ifndef PARAMD_PROTO_BASE64_H
#define PARAMD_PROTO_BASE64_H

#include <stddef.h>

/* Bytes needed to encode `length` bytes (without a terminating NUL). */
size_t paramd_base64_encoded_length(size_t length);

/* Upper bound of the decoded size of `length` base64 characters. */
size_t paramd_base64_decoded_length_bound(size_t length);

/* Encodes input into output (paramd_base64_encoded_length(length) bytes, no NUL). */
void paramd_base64_encode(const void *input, size_t length, char *output);

/* Decodes `length` characters of base64.  Returns the number of bytes written,
 * or -1 if the input is not canonical padded base64 (bad character, bad
 * length, misplaced padding) or the output does not fit in `capacity`. */
long long paramd_base64_decode(const char *input, size_t length, void *output, size_t capacity);

#endif
