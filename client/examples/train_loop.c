/*
 * train_loop.c - a complete worker on libparamd: fits w to a target by
 * least squares, with the optimizer (Adam) running on the server.
 *
 *     build/examples/train_loop [HOST [PORT [STEPS]]]
 *
 * It creates the model "train_loop_demo" (replacing one of that name),
 * runs STEPS (default 200) PUSHPULL round trips - gradient in, fresh
 * weights out - printing the loss as it goes, reads the weights back with
 * one pipelined batch of range pulls, prints them, and deletes the model.  Exit status 0
 * when the loss went down by at least 100 times, 1 on any error.
 *
 * Build it against an installed library with
 *     cc train_loop.c $(pkg-config --cflags --libs paramd) -o train_loop
 * (docs/CLIENT.md walks through it).
 */
#include <paramd/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 8
#define MODEL "train_loop_demo"

static const char *model_json =
    "{\"optimizer\": {\"name\": \"Adam\", \"lr\": 0.05},"
    " \"tensors\": [{\"name\": \"w\", \"shape\": [8]}]}";

/* Loss and gradient of 0.5 * |w - target|^2. */
static float loss_and_grad(const float *w, const float *target, float *grad)
{
    float loss = 0;
    for (int i = 0; i < N; i++) {
        grad[i] = w[i] - target[i];
        loss += 0.5f * grad[i] * grad[i];
    }
    return loss;
}

int main(int argc, char **argv)
{
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    int port = argc > 2 ? atoi(argv[2]) : PARAMD_DEFAULT_TCP_PORT;
    int steps = argc > 3 ? atoi(argv[3]) : 200;

    int error;
    paramd_client *c = paramd_connect(host, port, 5000, &error);
    if (c == NULL)
        return 1; /* out of memory */
    if (error != PARAMD_OK) {
        fprintf(stderr, "train_loop: %s (%s)\n", paramd_client_errstr(c), paramd_error_name(error));
        paramd_close(c);
        return 1;
    }
    printf("connected to %s\n", paramd_server_name(c));

    /* A fresh model: delete any old one (model_not_found is fine). */
    if (paramd_delete_model(c, MODEL) != PARAMD_OK &&
        paramd_client_error(c) != PARAMD_E_MODEL_NOT_FOUND)
        goto failed;
    if (paramd_create_model(c, MODEL, model_json, NULL) != PARAMD_OK)
        goto failed;

    float target[N], w[N], grad[N];
    for (int i = 0; i < N; i++)
        target[i] = (float)(i + 1) / N;
    if (paramd_pull_tensor(c, MODEL, "w", w, N, NULL) != PARAMD_OK)
        goto failed;

    /* One round trip per step: push the gradient, get the new weights. */
    paramd_push_options options = {.worker = "train_loop", .has_loss = 1};
    float first = loss_and_grad(w, target, grad), loss = first;
    for (int step = 0; step < steps; step++) {
        options.loss = loss;
        paramd_push_result result;
        if (paramd_pushpull_tensor(c, MODEL, "w", grad, w, N, &options, &result) != PARAMD_OK)
            goto failed;
        loss = loss_and_grad(w, target, grad);
        if (step % 50 == 0)
            printf("step %llu  lr %g  loss %.6f\n", (unsigned long long)result.step, result.lr,
                   loss);
    }

    /* Pipelined: read the weights back as N one-element ranges, all on the
     * wire at once; the replies are read while the requests are written. */
    paramd_batch *batch = paramd_batch_begin(c);
    if (batch == NULL)
        goto failed;
    float back[N];
    paramd_pull_item ranges[N];
    for (int i = 0; i < N; i++) {
        ranges[i] = (paramd_pull_item){.tensor = "w", .offset = (uint64_t)i, .count = 1,
                                       .weights = &back[i]};
        if (paramd_batch_pull(batch, MODEL, &ranges[i], 1, PARAMD_DTYPE_FLOAT32) < 0) {
            paramd_batch_free(batch);
            goto failed;
        }
    }
    int batch_error = paramd_batch_run(batch);
    paramd_batch_free(batch);
    if (batch_error != PARAMD_OK)
        goto failed;
    if (memcmp(back, w, sizeof w) != 0) {
        fprintf(stderr, "train_loop: the pipelined pulls disagree with the last pushpull\n");
        paramd_close(c);
        return 1;
    }

    printf("w =");
    for (int i = 0; i < N; i++)
        printf(" %.4f", w[i]);
    printf("\nloss %.6f -> %.6f\n", first, loss);
    if (paramd_delete_model(c, MODEL) != PARAMD_OK)
        goto failed;
    paramd_close(c);
    return loss * 100 <= first ? 0 : 1;

failed:
    fprintf(stderr, "train_loop: %s: %s\n", paramd_error_name(paramd_client_error(c)),
            paramd_client_errstr(c));
    paramd_close(c);
    return 1;
}
