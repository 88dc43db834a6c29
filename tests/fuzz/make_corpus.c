/*
 * make_corpus.c - writes the seed inputs of tests/fuzz/corpus/frame/: one
 * valid frame (or stream of frames) of every kind, encoded by proto/frame.c.
 * Run by `make fuzz-corpus`; the files are committed.
 */
#include "frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t buffer[1 << 16];

static void write_seed(const char *directory, const char *name, const paramd__writer *w)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", directory, name);
    FILE *file = fopen(path, "wb");
    if (file == NULL || fwrite(w->data, 1, w->size, file) != w->size) {
        perror(path);
        exit(1);
    }
    fclose(file);
}

int main(int argc, char **argv)
{
    const char *directory = argc > 1 ? argv[1] : "tests/fuzz/corpus/frame";
    paramd__writer w;
    static const float grad[5] = {0.5f, -1, 2, 3, -4};
    static const uint16_t half[3] = {0x3c00, 0xc000, 0x0001};
    const char *names[] = {"w", "layers.0.weight"};
    const int64_t shape[2] = {3, 4};

    paramd__writer_init(&w, buffer, sizeof buffer);
    paramd__encode_hello(&w, 1, 1, 1, "token", "fuzz");
    write_seed(directory, "hello", &w);

    paramd__writer_init(&w, buffer, sizeof buffer);
    paramd__encode_lookup(&w, 2, "model", names, 2);
    write_seed(directory, "lookup", &w);

    paramd__writer_init(&w, buffer, sizeof buffer);
    size_t start = paramd__encode_push_begin(
        &w, PARAMD_OP_PUSHPULL, 3, 1, 2,
        PARAMD_PUSH_HAS_LOSS | PARAMD_PUSH_HAS_GRAD_NORM | PARAMD_PUSH_HAS_VERSION, 0.5, 1.0, 7,
        "worker");
    paramd__put_item_header(&w, 0, PARAMD_DTYPE_FLOAT32, 0, 5);
    paramd__put_bytes(&w, grad, sizeof grad);
    paramd__put_item_header(&w, 1, PARAMD_DTYPE_FLOAT16, 0, 3);
    paramd__put_bytes(&w, half, sizeof half);
    paramd__frame_end(&w, start);
    write_seed(directory, "pushpull", &w);

    paramd__writer_init(&w, buffer, sizeof buffer);
    start = paramd__encode_pull_begin(&w, 4, 1, 2);
    paramd__put_item_header(&w, 0, PARAMD_DTYPE_FLOAT32, 1, 3);
    paramd__put_item_header(&w, 1, PARAMD_DTYPE_BFLOAT16, 0, 12);
    paramd__frame_end(&w, start);
    write_seed(directory, "pull", &w);

    paramd__writer_init(&w, buffer, sizeof buffer);
    const char *body = "{\"optimizer\":{\"name\":\"SGD\",\"lr\":0.1},\"tensors\":[]}";
    paramd__encode_create(&w, 5, "m", body, strlen(body));
    paramd__encode_model_request(&w, PARAMD_OP_STATS, 6, "m");
    paramd__encode_model_request(&w, PARAMD_OP_LIST, 7, NULL);
    paramd__encode_model_request(&w, PARAMD_OP_DELETE, 8, "m");
    paramd__encode_echo(&w, 9, grad, 16);
    write_seed(directory, "control-stream", &w);

    paramd__writer_init(&w, buffer, sizeof buffer);
    paramd__encode_hello_reply(&w, 1, 1 << 30, "paramd");
    start = paramd__encode_lookup_reply_begin(&w, 2, 1, 2, 10);
    paramd__put_lookup_entry(&w, 0, PARAMD_DTYPE_FLOAT32, 2, shape, 12, "w");
    paramd__put_lookup_entry(&w, 1, PARAMD_DTYPE_FLOAT32, 0, shape, 1, "s");
    paramd__frame_end(&w, start);
    start = paramd__encode_push_reply_begin(&w, PARAMD_OP_PUSHPULL, 3, 11, 0.1, 2.0, 65536, 0, 1);
    paramd__put_item_header(&w, 0, PARAMD_DTYPE_FLOAT32, 0, 5);
    paramd__put_bytes(&w, grad, sizeof grad);
    paramd__frame_end(&w, start);
    start = paramd__encode_pull_reply_begin(&w, 4, 11, 1);
    paramd__put_item_header(&w, 0, PARAMD_DTYPE_FLOAT32, 0, 5);
    paramd__put_bytes(&w, grad, sizeof grad);
    paramd__frame_end(&w, start);
    paramd__encode_json_reply(&w, PARAMD_OP_LIST | PARAMD_OP_REPLY, 7, "[]", 2);
    paramd__encode_error(&w, 8, PARAMD_E_MODEL_NOT_FOUND, 0, "no model");
    write_seed(directory, "replies-stream", &w);
    return 0;
}
