/*
 * safetensors.h - the safetensors file format, with paramd's checksum.
 *
 * A safetensors file is
 *     8 bytes      N, the header's length, little-endian unsigned
 *     N bytes      a JSON object: for every tensor "name": {"dtype": "F32",
 *                  "shape": [...], "data_offsets": [begin, end]}, and
 *                  "__metadata__": {string: string, ...}; padded with spaces
 *                  to a multiple of 8 bytes
 *     the data     every tensor's raw little-endian bytes, back to back;
 *                  offsets count from the start of the data
 * so the `safetensors` package, or a few lines of numpy, read it as it is.
 *
 * paramd adds one metadata entry, "paramd_crc32": eight lower-case hex
 * digits, the CRC-32 (zlib's, the IEEE polynomial) of the whole file with
 * those eight digits read as "00000000".  The writer emits it exactly once,
 * as the literal text "paramd_crc32":"xxxxxxxx" in a compact header, so the
 * writer can fill it in after streaming the data and a reader can find it
 * without parsing first.  A file whose checksum does not match, or whose
 * header, offsets or length are wrong in any way, is refused whole.
 *
 * Only float32 ("F32") tensors are written or accepted: everything paramd
 * keeps is float32.  This module does no file I/O except
 * paramd__safetensors_open, which maps a file read-only.
 */
#ifndef PARAMD_SERVER_SAFETENSORS_H
#define PARAMD_SERVER_SAFETENSORS_H

#include "error.h"
#include "tensor.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes host floats as little-endian data: port it for big-endian hosts"
#endif

/* The metadata key of the checksum, and its placeholder. */
#define PARAMD__SAFETENSORS_CRC_KEY "paramd_crc32"

/* Largest header accepted (the format's own readers use 100 MB). */
#define PARAMD__SAFETENSORS_MAX_HEADER (100u * 1024u * 1024u)

/* One tensor of a file: its key, shape and float32 data. */
typedef struct paramd__safetensors_entry {
    const char *name;       /* the key; borrowed */
    int dimension_count;    /* 0 (a scalar) to PARAMD__MAX_DIMENSIONS */
    int64_t shape[PARAMD__MAX_DIMENSIONS];
    size_t count;           /* elements: the product of shape */
    const float *data;      /* writer: the caller's; reader: inside the mapping */
} paramd__safetensors_entry;

/* Builds the header for entries laid out in order (8-byte length, JSON,
 * padding): *header is malloc'ed (*header_size bytes, a multiple of 8), and
 * *crc_offset is the file offset of the checksum's eight digits, which hold
 * "00000000".  `metadata` maps strings to strings (it may be NULL); the
 * checksum key is added to a copy, never to it.  The data that follows is
 * each entry's count * 4 bytes in the same order. */
int paramd__safetensors_header(const paramd__safetensors_entry *entries, size_t count,
                               const json_t *metadata, unsigned char **header,
                               size_t *header_size, size_t *crc_offset, paramd__error *error);

/* Writes crc as eight lower-case hex digits into digits[0..7]. */
void paramd__safetensors_crc_digits(uint32_t crc, char digits[8]);

/* A file as read: the parsed header and pointers into the bytes.  The
 * entries are in data order. */
typedef struct paramd__safetensors_file {
    const unsigned char *bytes; /* the whole file */
    size_t size;
    void *mapping;              /* from paramd__safetensors_open, else NULL */
    json_t *header;             /* owned */
    const json_t *metadata;     /* borrowed from header; an object, maybe empty */
    paramd__safetensors_entry *entries; /* owned; names borrowed from header */
    size_t entry_count;
} paramd__safetensors_file;

/* Checks and parses a whole file held in memory (borrowed: keep it alive
 * while using `file`): the length, the checksum, the JSON header, every
 * entry's dtype, shape and offsets (contiguous, covering the data exactly).
 * PARAMD_E_CHECKPOINT_CORRUPT with a message saying what is wrong. */
int paramd__safetensors_parse(const unsigned char *bytes, size_t size,
                              paramd__safetensors_file *file, paramd__error *error);

/* Maps `path` read-only and parses it; PARAMD_E_CHECKPOINT_FAILED when it
 * cannot be opened or mapped. */
int paramd__safetensors_open(const char *path, paramd__safetensors_file *file,
                             paramd__error *error);

/* The entry named `name`, or NULL. */
const paramd__safetensors_entry *paramd__safetensors_find(const paramd__safetensors_file *file,
                                                          const char *name);

/* A metadata string, or NULL. */
const char *paramd__safetensors_metadata(const paramd__safetensors_file *file, const char *key);

void paramd__safetensors_close(paramd__safetensors_file *file);

#endif
