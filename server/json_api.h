/*
 * json_api.h - the JSON shapes of paramd's API, to and from core structs.
 *
 * Parsing here checks syntax and types and names the offending field in
 * every error ("tensors[1].shape[0]: must be an integer"); semantic checks
 * (ranges, shapes against data, finiteness of gradients) belong to the core
 * and the optimizer table, which these functions call.  No I/O happens here,
 * so any front end that speaks JSON can reuse it.
 */
#ifndef PARAMD_SERVER_JSON_API_H
#define PARAMD_SERVER_JSON_API_H

#include "core.h"

#include <jansson.h>

/* How an array of floats travels: a JSON array of numbers, or
 * {"dtype": "float32" | "float16" | "bfloat16", "b64": "<base64 of the
 * little-endian values>"}.  16-bit values are converted exactly to float32
 * on the way in and rounded to nearest even on the way out (proto/half.h). */
typedef enum paramd__float_encoding {
    PARAMD__ENCODING_JSON = 0,
    PARAMD__ENCODING_BASE64 = 1,          /* float32 */
    PARAMD__ENCODING_BASE64_FLOAT16 = 2,  /* IEEE binary16 */
    PARAMD__ENCODING_BASE64_BFLOAT16 = 3, /* bfloat16 */
} paramd__float_encoding;

/* "float32", "float16" or "bfloat16" (JSON arrays count as "float32"). */
const char *paramd__encoding_dtype(paramd__float_encoding encoding);

/* The base64 encoding of a dtype name; PARAMD_E_BAD_ENCODING if unknown. */
int paramd__encoding_from_dtype(const char *dtype, paramd__float_encoding *encoding);

/* Flags for json_dumps: compact, and 9 significant digits, which round-trip
 * every float32 exactly. */
#define PARAMD__JSON_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

/* Decodes floats in any encoding into a new buffer (free with
 * paramd__float_array_free(values, count); NULL when count is 0) and says
 * which encoding it was.  JSON numbers that do not fit in float32 are
 * refused with PARAMD_E_NON_FINITE; base64 may carry any value, NaN and
 * infinities included (the core decides what to do with them). */
int paramd__json_decode_floats(const json_t *value, const char *field, float **values,
                               size_t *count, paramd__float_encoding *encoding,
                               paramd__error *error);

/* Encodes floats; NULL if memory ran out. */
json_t *paramd__json_encode_floats(const float *values, size_t count,
                                   paramd__float_encoding encoding);

/* Parses {"name": "AdamW", "lr": ..., ...} into a configuration with defaults
 * filled in and every value range-checked. */
int paramd__json_parse_optimizer(const json_t *object, paramd__optimizer_config *config,
                                 paramd__error *error);

/* Parses a model creation body.  The spec borrows strings from `body` (keep
 * it alive) and owns decoded value buffers: release with
 * paramd__json_model_spec_free. */
int paramd__json_parse_model_spec(const json_t *body, const char *name,
                                  paramd__model_spec *spec, paramd__error *error);
void paramd__json_model_spec_free(paramd__model_spec *spec);

/* One hyperparameter's value (v: its numbers in a configuration) as JSON:
 * a number, an integer, a boolean, a string or an array. */
json_t *paramd__json_hyperparameter(const paramd__hyperparameter_spec *spec, const double *v);

/* {"name": "AdamW", "lr": 0.001, "betas": [0.9, 0.999], ...} */
json_t *paramd__json_optimizer(const paramd__optimizer_config *config);

/* The full description of a model (GET /v1/models/{model}), read under its
 * config_lock, so it shows one consistent configuration. */
json_t *paramd__json_describe_model(paramd__model *model);

/* One line of the model list (GET /v1/models). */
json_t *paramd__json_model_summary(paramd__model *model);

/* Writes the reply to a push or pull, {"step": N, "weights": {"name": floats,
 * ...}} plus a newline, as one malloc'ed buffer (*length bytes, also
 * NUL-terminated), or NULL if memory ran out.  Base64 values are encoded
 * straight into the buffer: a 64M-element tensor's reply is written once,
 * not built as a jansson string and dumped character by character.  Tensor
 * names need no escaping (model.h restricts their characters); JSON arrays
 * are still formatted by jansson. */
char *paramd__json_write_weights(uint64_t step, const paramd__tensor_io *items,
                                 const paramd__float_encoding *encodings, size_t count,
                                 size_t *length);

/* Parses a model's "clip" object ({"value": v}, {"max_norm": m, "norm_type":
 * p or "inf", "per_tensor": b} or {"agc": a, "eps": e}) with defaults filled
 * in and ranges checked; errors name the field ("clip.max_norm: ..."). */
int paramd__json_parse_clip(const json_t *object, paramd__clip_config *config,
                            paramd__error *error);

/* The clip configuration with every default, as the model description shows it. */
json_t *paramd__json_clip(const paramd__clip_config *config);

/* The reply to a push: {"step": N, "lr": <the lr used>, then, only where
 * they apply, "grad_norm": <the norm before clipping>, "loss_scale": <the
 * scale for the next loss>, "skipped": true and "reason": "nonfinite" |
 * "loss_scale", "zeroed": <entries zeroed>, "accumulated": {"name": i, ...}
 * and "of": k; then "weights": {...}}. */
char *paramd__json_write_push_reply(const paramd__push_outcome *outcome,
                                    const paramd__tensor_io *items,
                                    const paramd__float_encoding *encodings, size_t count,
                                    size_t *length);

/* Reads one hyperparameter's JSON value (a number, a boolean, or a pair of
 * numbers, as spec says) into values, without range checks; errors name
 * `field`. */
int paramd__json_hyperparameter_value(const json_t *value,
                                      const paramd__hyperparameter_spec *spec,
                                      const char *field, double values[3], paramd__error *error);

/* ---------------------------------------------------------------------------
 * Training options (json_training.c)
 * ------------------------------------------------------------------------- */

/* "nonfinite": "error" | "skip" | "zero". */
int paramd__json_parse_nonfinite(const json_t *value, paramd__nonfinite_policy *policy,
                                 paramd__error *error);

/* "loss_scale": "dynamic" (GradScaler's defaults) or {"init_scale",
 * "growth_factor", "backoff_factor", "growth_interval"} with defaults filled
 * in; *init_scale_given says whether init_scale was given. */
int paramd__json_parse_loss_scale(const json_t *value, paramd__loss_scale_config *config,
                                  bool *init_scale_given, paramd__error *error);

/* "accumulate": k (mean) or {"steps": k, "mode": "mean" | "sum"}. */
int paramd__json_parse_accumulate(const json_t *value, paramd__accumulate_config *config,
                                  paramd__error *error);

/* "grad_noise": {"eta": required, "gamma": 0.55, "seed": 0}. */
int paramd__json_parse_grad_noise(const json_t *value, paramd__grad_noise_config *config,
                                  paramd__error *error);

/* Descriptions with every default filled in; the loss scale's also shows
 * the running scale and growth tracker when state is not NULL. */
json_t *paramd__json_loss_scale(const paramd__loss_scale_config *config,
                                const paramd__loss_scale *state);
json_t *paramd__json_accumulate(const paramd__accumulate_config *config);
json_t *paramd__json_grad_noise(const paramd__grad_noise_config *config);

/* "consistency": {"mode": "async" | "sync" | "ssp", "workers": K,
 * "backup_workers": b, "staleness": s, "timeout": seconds, "staleness_lr":
 * bool}, defaults filled in and checked. */
int paramd__json_parse_consistency(const json_t *value, paramd__consistency_config *config,
                                   paramd__error *error);

/* The configuration and what the model has seen of its workers (takes the
 * consistency lock). */
json_t *paramd__json_consistency(paramd__model *model);
json_t *paramd__json_nonfinite_counts(paramd__nonfinite_counters *counts);

/* ---------------------------------------------------------------------------
 * After the step, and optimizers that wrap another (json_after_step.c)
 * ------------------------------------------------------------------------- */

/* "optimizer": a table optimizer, or {"name": "Lookahead", "k", "alpha",
 * "base": {...}}: fills spec->optimizer (the base) and spec->lookahead. */
int paramd__json_parse_model_optimizer(const json_t *object, paramd__model_spec *spec,
                                       paramd__error *error);
/* The model's "optimizer" as it was given: wrappers around the base. */
json_t *paramd__json_model_optimizer(const paramd__model *model);

int paramd__json_parse_averaging(const json_t *value, paramd__averaging_config *config,
                                 paramd__error *error);
json_t *paramd__json_averaging(const paramd__averaging_config *config);

/* tensors[i].constraint; `field` names it in errors. */
int paramd__json_parse_constraint(const json_t *value, const char *field,
                                  paramd__constraint *constraint, paramd__error *error);

/* ---------------------------------------------------------------------------
 * Runtime changes (json_patch.c)
 * ------------------------------------------------------------------------- */

/* Parses a PATCH /v1/models/{model} body into a patch for `model` (whose
 * optimizer type and group count, which never change, decide the shapes):
 *   {"optimizer": {hyperparameter: value, ...},
 *    "param_groups": [{hyperparameter: value, ...}, ...]   (one per group),
 *    "clip": {...} | null, "schedule": {...} | null, "nonfinite": "...",
 *    "grad_noise": {...} | null, "loss_scale": ... | null}
 * Types are checked here, ranges and combinations by the core.  Free with
 * paramd__json_model_patch_free. */
int paramd__json_parse_model_patch(const json_t *body, const paramd__model *model,
                                   paramd__model_patch *patch, paramd__error *error);
void paramd__json_model_patch_free(paramd__model_patch *patch);

/* The same for optimizer state: {"step": N, "slot": "<slot>", "state": {...}}.
 * `slot` must need no escaping (it is a state slot name from the table). */
char *paramd__json_write_state(uint64_t step, const char *slot, const paramd__tensor_io *items,
                               const paramd__float_encoding *encodings, size_t count,
                               size_t *length);

/* ---------------------------------------------------------------------------
 * Whole operations shared by the HTTP and binary front ends
 * ------------------------------------------------------------------------- */

/* Parses a request body that must be a JSON object (duplicate keys are
 * refused).  NULL with PARAMD_E_BAD_JSON (empty, not JSON: the message
 * gives jansson's reason and position) or PARAMD_E_BAD_REQUEST (JSON, but
 * not an object). */
json_t *paramd__json_parse_body(const char *text, size_t length, paramd__error *error);

/* Creates model `name` from its creation body (PUT /v1/models/{name}) and
 * returns its description (GET /v1/models/{name}), or NULL with *error. */
json_t *paramd__json_create_model(paramd__server *server, const char *name, const json_t *body,
                                  paramd__error *error);

/* {"models": [summary, ...]}, sorted by name (GET /v1/models). */
json_t *paramd__json_list_models(paramd__server *server);

/* {"error": {"code": "...", "message": "..."}} */
json_t *paramd__json_error(const paramd__error *error);

#endif
