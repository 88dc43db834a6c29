# paramd - build, run and test.
#
#   make            build build/paramd (installs missing Debian packages first)
#   make run        build, then start paramd with its defaults on 127.0.0.1
#   make test       build and run every test (unit, conformance, integration)
#   make test SANITIZE=1   the same under AddressSanitizer + UBSan (in build/sanitize)
#   make bench      build and run paramd-bench
#   make bench-checkpoint   checkpoint time of 64M AdamW parameters, stats cost per push
#   make goldens    regenerate the PyTorch golden files (needs python3-torch)
#   make fuzz       fuzz the binary protocol's decoders with libFuzzer (clang) for
#                   FUZZ_SECONDS (default 60); crashes land in tests/fuzz/crashes/,
#                   which `make test` replays with the corpus
#   make clean

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD ?= build/sanitize
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPTIMIZE ?= -O1 -g
else
BUILD ?= build
SANITIZE_FLAGS =
OPTIMIZE ?= -O3 -g
endif

CC ?= cc
PKG_CONFIG ?= pkg-config
PACKAGES = libmicrohttpd jansson openblas libuv zlib
PYTHON = /usr/bin/python3

# -std=c11 also makes gcc round every float operation separately
# (-ffp-contract=off), which keeps the fast and reference kernels identical;
# -fno-math-errno lets it vectorise sqrtf.
WARNINGS = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-missing-field-initializers
CFLAGS_ALL = -std=c11 -D_POSIX_C_SOURCE=200809L $(OPTIMIZE) $(WARNINGS) -fno-math-errno \
             -pthread -Iinclude -Iserver -Iproto $(SANITIZE_FLAGS) $(CFLAGS)
LDFLAGS_ALL = -pthread $(SANITIZE_FLAGS) $(LDFLAGS)
LIBS_SERVER = $(shell $(PKG_CONFIG) --libs $(PACKAGES) 2>/dev/null) -lm
LIBS_CHECK = $(shell $(PKG_CONFIG) --libs check 2>/dev/null)
CFLAGS_DEPS = $(shell $(PKG_CONFIG) --cflags $(PACKAGES) 2>/dev/null)

PROTO_SOURCES = $(wildcard proto/*.c)
SERVER_SOURCES = $(filter-out server/main.c,$(wildcard server/*.c))
UNIT_SOURCES = $(wildcard tests/unit/*.c)

PROTO_OBJECTS = $(PROTO_SOURCES:%.c=$(BUILD)/obj/%.o)
SERVER_OBJECTS = $(SERVER_SOURCES:%.c=$(BUILD)/obj/%.o)
UNIT_BINARIES = $(UNIT_SOURCES:tests/unit/%.c=$(BUILD)/tests/%)

DEPS_STAMP = build/.deps-installed

.PHONY: all run test unit-test integration-test bench bench-checkpoint goldens deps clean fuzz fuzz-corpus
all: $(BUILD)/paramd

# Installs missing Debian packages once (again whenever the script changes).
$(DEPS_STAMP): deploy/install-deps.sh
	@mkdir -p $(dir $@)
	@sh deploy/install-deps.sh
	@touch $@
deps: $(DEPS_STAMP)

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CFLAGS_DEPS) -MMD -MP -c $< -o $@

# The dashboard page is embedded with .incbin, which -MMD does not see.
$(BUILD)/obj/server/dashboard.o: server/dashboard/index.html

$(BUILD)/libparamd-server.a: $(SERVER_OBJECTS) $(PROTO_OBJECTS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/paramd: $(BUILD)/obj/server/main.o $(BUILD)/libparamd-server.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_SERVER)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libparamd-server.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CFLAGS_DEPS) $(shell $(PKG_CONFIG) --cflags check) -o $@ $< \
	    $(BUILD)/libparamd-server.a $(LDFLAGS_ALL) $(LIBS_CHECK) $(LIBS_SERVER)

run: $(BUILD)/paramd
	$(BUILD)/paramd

test: $(BUILD)/paramd $(UNIT_BINARIES) $(BUILD)/paramd-bench
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run-tests.sh

bench: $(BUILD)/paramd-bench $(BUILD)/paramd
	BUILD=$(BUILD) sh bench/run-bench.sh

BENCH_SOURCES = bench/paramd-bench.c bench/http_bench.c bench/net_bench.c
$(BUILD)/paramd-bench: $(BENCH_SOURCES) bench/http_bench.h bench/net_bench.h $(BUILD)/libparamd-server.a | $(DEPS_STAMP)
	$(CC) $(CFLAGS_ALL) $(CFLAGS_DEPS) -Ibench -o $@ $(BENCH_SOURCES) \
	    $(BUILD)/libparamd-server.a $(LDFLAGS_ALL) $(LIBS_SERVER)

# Checkpoint and statistics costs (docs/PERFORMANCE.md): 64M AdamW parameters.
$(BUILD)/checkpoint-bench: bench/checkpoint_bench.c $(BUILD)/libparamd-server.a | $(DEPS_STAMP)
	$(CC) $(CFLAGS_ALL) $(CFLAGS_DEPS) -o $@ $< $(BUILD)/libparamd-server.a $(LDFLAGS_ALL) $(LIBS_SERVER)

bench-checkpoint: $(BUILD)/checkpoint-bench
	$(BUILD)/checkpoint-bench

goldens:
	sh deploy/install-deps.sh --goldens
	$(PYTHON) tests/conformance/generate_goldens.py

# libFuzzer needs clang; deploy/install-deps.sh --fuzz installs it.
CLANG ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
             -Iinclude -Iproto
build/fuzz/fuzz_frame: tests/fuzz/fuzz_frame.c proto/frame.c proto/errors.c
	@sh deploy/install-deps.sh --fuzz
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_FLAGS) -o $@ $^

fuzz: build/fuzz/fuzz_frame
	@mkdir -p build/fuzz/corpus/frame tests/fuzz/crashes
	build/fuzz/fuzz_frame -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=tests/fuzz/crashes/ \
	    build/fuzz/corpus/frame tests/fuzz/corpus/frame

# Rewrites the committed seed inputs from proto/frame.c's encoders.
fuzz-corpus: tests/fuzz/make_corpus.c $(PROTO_OBJECTS)
	@mkdir -p build/fuzz tests/fuzz/corpus/frame
	$(CC) $(CFLAGS_ALL) -o build/fuzz/make_corpus tests/fuzz/make_corpus.c $(PROTO_OBJECTS)
	build/fuzz/make_corpus tests/fuzz/corpus/frame

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
