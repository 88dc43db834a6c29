/*
 * fuzz_server.h - what the server-side fuzz targets share: one in-memory
 * paramd__server (no sockets, no data directory, no checkpointer), the
 * models they create in it, and a way to hand a request to the real HTTP
 * route table (paramd__http_dispatch) without libmicrohttpd.
 *
 * Every target recreates the models it touches for each input, so an input
 * does the same thing however many inputs ran before it: a crash found by
 * libFuzzer replays from its file alone (make test does exactly that).
 *
 * This is a header of static functions included by one target file each
 * (and, through the target, by its replay test in tests/unit/).
 */
#ifndef PARAMD_TESTS_FUZZ_SERVER_H
#define PARAMD_TESTS_FUZZ_SERVER_H

#include "core.h"
#include "http.h"
#include "json_api.h"
#include "log.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest model (all tensors together) a target builds and pushes to.
 * Bigger shapes are valid requests, but they only measure memory
 * bandwidth: the parsers and checks in front of the allocation have run
 * by then. */
#define FUZZ_MAX_MODEL_ELEMENTS 4096

static paramd__server fuzz_server;
static paramd__http_server fuzz_http;

/* Sets the server up once: no logging below errors (patches log every
 * change), and OpenBLAS on the calling thread only (Muon's products). */
static paramd__server *fuzz_server_get(void)
{
    static int ready;
    if (!ready) {
        paramd__log_set_level(PARAMD__LOG_ERROR);
        openblas_set_num_threads(1);
        paramd__server_init(&fuzz_server);
        fuzz_http.server = &fuzz_server;
        ready = 1;
    }
    return &fuzz_server;
}

/* Aborts the target: a seed configuration the server refuses is a bug in
 * the target, not a finding. */
static void fuzz_fail(const char *what, const paramd__error *error)
{
    fprintf(stderr, "fuzz target setup: %s: %s\n", what, error ? error->message : "");
    abort();
}

/* Creates model `name` from a known-good creation body (replacing any
 * model of that name); aborts if the server refuses it. */
__attribute__((unused)) static void fuzz_create_model(const char *name, const char *body_text)
{
    paramd__server *server = fuzz_server_get();
    paramd__error error = {0};
    paramd__core_delete_model(server, name, &error);
    json_t *body = paramd__json_parse_body(body_text, strlen(body_text), &error);
    if (body == NULL)
        fuzz_fail(body_text, &error);
    json_t *description = paramd__json_create_model(server, name, body, &error);
    json_decref(body);
    if (description == NULL)
        fuzz_fail(body_text, &error);
    json_decref(description);
}

__attribute__((unused)) static void fuzz_delete_model(const char *name)
{
    paramd__error error = {0};
    paramd__core_delete_model(fuzz_server_get(), name, &error);
}

/* Sends one request through the real route table, as http.c would after
 * reading the whole body (body_length bytes; http.c NUL-terminates its
 * copy, so this does too), and discards the answer after serialising it
 * (json_dumps walks whatever the handler built).  Returns the status. */
__attribute__((unused)) static unsigned fuzz_dispatch(const char *method, const char *path, const uint8_t *body,
                              size_t body_length)
{
    fuzz_server_get();
    char *copy = malloc(body_length + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, body, body_length);
    copy[body_length] = '\0';
    paramd__http_request request = {.http = &fuzz_http,
                                    .connection = NULL,
                                    .method = method,
                                    .path = path,
                                    .body = copy,
                                    .body_length = body_length};
    paramd__http_response response = {0};
    paramd__http_dispatch(&request, &response);
    if (response.body) {
        char *text = json_dumps(response.body, PARAMD__JSON_DUMP_FLAGS);
        free(text);
        json_decref(response.body);
    }
    free(response.raw_body);
    free(copy);
    return response.status;
}

/* Pushes a gradient of `value` (every element) to every tensor of a model
 * through the consistency layer, as a front end does; a push that would
 * wait for other workers is expired at once.  Exercises the optimizer with
 * whatever configuration the input gave the model. */
static void fuzz_notify(paramd__push_ticket *ticket)
{
    (void)ticket;
}

__attribute__((unused)) static void fuzz_push_all(paramd__model *model, float value, double loss)
{
    paramd__server *server = fuzz_server_get();
    size_t count = model->tensor_count;
    paramd__tensor_io *items = calloc(count ? count : 1, sizeof *items);
    if (items == NULL)
        return;
    size_t ready = 0;
    for (size_t i = 0; i < count; i++, ready++) {
        paramd__tensor *tensor = model->tensors[i];
        float *grad = paramd__float_array_alloc(tensor->count);
        float *weights = paramd__float_array_alloc(paramd__tensor_largest_array(tensor));
        if (grad == NULL || weights == NULL) {
            paramd__float_array_free(grad, tensor->count);
            paramd__float_array_free(weights, paramd__tensor_largest_array(tensor));
            break;
        }
        for (size_t j = 0; j < tensor->count; j++)
            grad[j] = value;
        items[i] = (paramd__tensor_io){.tensor = tensor,
                                       .grad = grad,
                                       .grad_count = tensor->count,
                                       .grad_writable = true,
                                       .weights = weights};
    }
    if (ready == count) {
        paramd__push_ticket ticket = {.items = items,
                                      .item_count = count,
                                      .options = {loss, NAN, NAN, 0, "fuzz"},
                                      .worker = "fuzz",
                                      .notify = fuzz_notify};
        if (paramd__core_push_submit(server, model, &ticket) == PARAMD__PUSH_WAITING)
            paramd__core_push_expire(server, model, &ticket);
        if (getenv("PARAMD_FUZZ_VERBOSE"))
            fprintf(stderr, "fuzz: push: %d %s (step %llu)\n", ticket.result,
                    ticket.error.message, (unsigned long long)ticket.outcome.step);
    }
    for (size_t i = 0; i < ready; i++) {
        paramd__float_array_free((float *)items[i].grad, items[i].tensor->count);
        paramd__float_array_free(items[i].weights,
                                 paramd__tensor_largest_array(items[i].tensor));
    }
    free(items);
}

#endif
