# paramd - build, run and test.
#
#   make            build build/paramd, the client library (build/libparamd.a,
#                   build/libparamd.so.0, build/paramd.pc), build/paramctl and the
#                   example client (installs missing Debian packages first)
#   make install    install the server, paramctl, the client library (static and
#                   shared), its headers, paramd.pc, the man pages, the example
#                   configuration and the systemd unit under PREFIX (default
#                   /usr/local; DESTDIR too), and SYSCONFDIR/paramd/paramd.conf
#                   (default /etc) unless it exists (docs/DEPLOY.md)
#   make uninstall  remove what make install installed (paramd.conf only if unchanged)
#   make run        build, then start paramd with its defaults on 127.0.0.1
#   make test       build and run every test (unit, conformance, integration)
#   make test SANITIZE=1   the same under AddressSanitizer + UBSan (in build/sanitize)
#   make test-tsan  the concurrency tests under ThreadSanitizer (in build/tsan)
#   make bench      build and run paramd-bench (bench/shard-bench.sh: the sharded client)
#   make bench-checkpoint   checkpoint time of 64M AdamW parameters, stats cost per push
#   make demo       distributed training of an MLP on scikit-learn's digits: 4 worker
#                   processes (paramd.torch.RemoteOptimizer) against 2 shards, async,
#                   sync and ssp; writes $(BUILD)/demo/modes.png and prints each mode's
#                   test accuracy (installs python3-sklearn and python3-matplotlib)
#   make goldens    regenerate the PyTorch golden files (needs python3-torch)
#   make fuzz       run every libFuzzer target (clang; the binary frame decoders, the
#                   model configuration, push and PATCH bodies, the shard map) for
#                   FUZZ_SECONDS each (default 60); crashes land in
#                   tests/fuzz/crashes/NAME/, which `make test` replays with the
#                   corpus (docs/TESTING.md)
#   make clean

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD ?= build/sanitize
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPTIMIZE ?= -O1 -g
else ifeq ($(SANITIZE),thread)
# ThreadSanitizer (make test-tsan): the concurrency tests only, see below.
# No target_clones: their ifunc resolvers run before TSan's runtime is up
# and crash once instrumented, so the kernels are built for the baseline.
BUILD ?= build/tsan
SANITIZE_FLAGS = -fsanitize=thread -fno-omit-frame-pointer -DPARAMD_NO_TARGET_CLONES
OPTIMIZE ?= -O1 -g
else
BUILD ?= build
SANITIZE_FLAGS =
OPTIMIZE ?= -O3 -g
endif

CC ?= cc
PKG_CONFIG ?= pkg-config
PACKAGES = libmicrohttpd jansson openblas lapacke libuv zlib
# paramctl speaks HTTP with libcurl and reads JSON with jansson.
PARAMCTL_PACKAGES = jansson libcurl
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/paramd
# The configuration file lives in /etc whatever PREFIX is (the systemd unit
# reads SYSCONFDIR/paramd/paramd.conf); systemd searches PREFIX/lib/systemd/system
# for PREFIX /usr and /usr/local.
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
PYTHON = /usr/bin/python3

# -std=c11 also makes gcc round every float operation separately
# (-ffp-contract=off), which keeps the fast and reference kernels identical;
# -fno-math-errno lets it vectorise sqrtf.
WARNINGS = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-missing-field-initializers
CFLAGS_COMMON = -std=c11 -D_POSIX_C_SOURCE=200809L $(OPTIMIZE) $(WARNINGS) -fno-math-errno \
                -pthread -Iinclude $(SANITIZE_FLAGS) $(CFLAGS)
CFLAGS_ALL = $(CFLAGS_COMMON) -Iserver -Iproto
# The client library sees only its own headers and proto/, and exports only
# what include/paramd/ marks PARAMD_EXPORT.  It reads shard maps and merges
# the shards' JSON documents with jansson.
LIB_PACKAGES = jansson
CFLAGS_LIB = $(CFLAGS_COMMON) -Iproto -Iclient -fPIC -fvisibility=hidden \
             $(shell $(PKG_CONFIG) --cflags $(LIB_PACKAGES) 2>/dev/null)
LIBS_LIB = $(shell $(PKG_CONFIG) --libs $(LIB_PACKAGES) 2>/dev/null) -lm
LDFLAGS_ALL = -pthread $(SANITIZE_FLAGS) $(LDFLAGS)
LIBS_SERVER = $(shell $(PKG_CONFIG) --libs $(PACKAGES) 2>/dev/null) -lm
LIBS_CHECK = $(shell $(PKG_CONFIG) --libs check 2>/dev/null)
CFLAGS_DEPS = $(shell $(PKG_CONFIG) --cflags $(PACKAGES) $(PARAMCTL_PACKAGES) 2>/dev/null)
LIBS_PARAMCTL = $(shell $(PKG_CONFIG) --libs $(PARAMCTL_PACKAGES) 2>/dev/null) -lm

PROTO_SOURCES = $(wildcard proto/*.c)
SERVER_SOURCES = $(filter-out server/main.c,$(wildcard server/*.c))
UNIT_SOURCES = $(wildcard tests/unit/*.c)
# The client library: client/*.c but paramctl's files, and the proto/ codec
# it needs, compiled again as position-independent, hidden-by-default code.
CLIENT_SOURCES = $(filter-out client/paramctl%,$(wildcard client/*.c))
CLIENT_PROTO_SOURCES = proto/frame.c proto/half.c proto/errors.c proto/shard_map.c
PARAMCTL_SOURCES = $(wildcard client/paramctl*.c)

PROTO_OBJECTS = $(PROTO_SOURCES:%.c=$(BUILD)/obj/%.o)
SERVER_OBJECTS = $(SERVER_SOURCES:%.c=$(BUILD)/obj/%.o)
UNIT_BINARIES = $(UNIT_SOURCES:tests/unit/%.c=$(BUILD)/tests/%)
CLIENT_OBJECTS = $(CLIENT_SOURCES:%.c=$(BUILD)/obj-lib/%.o) \
                 $(CLIENT_PROTO_SOURCES:%.c=$(BUILD)/obj-lib/%.o)
PARAMCTL_OBJECTS = $(PARAMCTL_SOURCES:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/proto/base64.o
CLIENT_OUTPUTS = $(BUILD)/libparamd.a $(BUILD)/libparamd.so.0 $(BUILD)/libparamd.so \
                 $(BUILD)/paramd.pc $(BUILD)/paramd-uninstalled.pc $(BUILD)/paramctl \
                 $(BUILD)/examples/train_loop

DEPS_STAMP = build/.deps-installed

.PHONY: all run test unit-test integration-test bench bench-checkpoint goldens deps clean fuzz \
        fuzz-build fuzz-merge fuzz-corpus install uninstall demo test-tsan FORCE
all: $(BUILD)/paramd $(CLIENT_OUTPUTS)

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

# ---------------------------------------------------------------------------
# The client library, paramctl and the example
# ---------------------------------------------------------------------------

$(BUILD)/obj-lib/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_LIB) -MMD -MP -c $< -o $@

$(BUILD)/libparamd.a: $(CLIENT_OBJECTS)
	@rm -f $@
	ar rcs $@ $^

# -z defs: every symbol the library needs is resolved when it is linked
# (not under the sanitizers, whose runtime the executable brings).
SHARED_DEFS = $(if $(filter-out 0,$(SANITIZE)),,-Wl,-z,defs)
$(BUILD)/libparamd.so.0: $(CLIENT_OBJECTS)
	$(CC) -shared -Wl,-soname,libparamd.so.0 $(SHARED_DEFS) -o $@ $^ $(LDFLAGS_ALL) $(LIBS_LIB)

$(BUILD)/libparamd.so: $(BUILD)/libparamd.so.0
	ln -sf libparamd.so.0 $@

# paramd.pc for an installed library (PREFIX), and paramd-uninstalled.pc,
# which pkg-config prefers when PKG_CONFIG_PATH holds the build directory:
# it points at this tree and sets an rpath, so programs run from it.
PC_COMMON = Name: paramd\nDescription: C client library of the paramd parameter server\nVersion: $(shell sed -n 's/.*PARAMD_VERSION_STRING "\(.*\)"/\1/p' include/paramd/paramd.h)\n
$(BUILD)/paramd.pc: FORCE
	@mkdir -p $(dir $@)
	@printf 'prefix=$(PREFIX)\nlibdir=$(LIBDIR)\nincludedir=$(INCLUDEDIR)\n\n$(PC_COMMON)Cflags: -I$${includedir}\nLibs: -L$${libdir} -lparamd\nRequires.private: $(LIB_PACKAGES)\nLibs.private: -lm -pthread\n' >$@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(BUILD)/paramd-uninstalled.pc: FORCE
	@mkdir -p $(dir $@)
	@printf 'libdir=$(abspath $(BUILD))\nincludedir=$(abspath include)\n\n$(PC_COMMON)Cflags: -I$${includedir}\nLibs: -L$${libdir} -Wl,-rpath,$${libdir} -lparamd\nRequires.private: $(LIB_PACKAGES)\nLibs.private: -lm -pthread\n' >$@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(BUILD)/paramctl: $(PARAMCTL_OBJECTS) $(BUILD)/libparamd.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_PARAMCTL)

# The example sees only the public headers, as a user's program would.
$(BUILD)/examples/train_loop: client/examples/train_loop.c $(BUILD)/libparamd.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -o $@ $< $(BUILD)/libparamd.a $(LDFLAGS_ALL) $(LIBS_LIB)

# Every file make install writes, but the configuration file, relative to DESTDIR.
INSTALLED_FILES = $(BINDIR)/paramd $(BINDIR)/paramctl \
                  $(INCLUDEDIR)/paramd/paramd.h $(INCLUDEDIR)/paramd/protocol.h \
                  $(INCLUDEDIR)/paramd/client.h $(LIBDIR)/libparamd.a $(LIBDIR)/libparamd.so.0 \
                  $(LIBDIR)/libparamd.so $(LIBDIR)/pkgconfig/paramd.pc $(MANDIR)/man8/paramd.8 \
                  $(MANDIR)/man1/paramctl.1 $(DOCDIR)/paramd.conf.example \
                  $(DOCDIR)/tokens.conf $(SYSTEMDUNITDIR)/paramd.service

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/paramd \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) \
	    $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSCONFDIR)/paramd
	install -m 755 $(BUILD)/paramd $(BUILD)/paramctl $(DESTDIR)$(BINDIR)/
	install -m 644 include/paramd/paramd.h include/paramd/protocol.h include/paramd/client.h \
	    $(DESTDIR)$(INCLUDEDIR)/paramd/
	install -m 644 $(BUILD)/libparamd.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libparamd.so.0 $(DESTDIR)$(LIBDIR)/
	ln -sf libparamd.so.0 $(DESTDIR)$(LIBDIR)/libparamd.so
	install -m 644 $(BUILD)/paramd.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 644 docs/man/paramd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 docs/man/paramctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 deploy/paramd.conf.example $(DESTDIR)$(DOCDIR)/
	sed -e 's|/usr/local/bin/paramd|$(BINDIR)/paramd|g' -e 's|/etc/paramd/|$(SYSCONFDIR)/paramd/|g' \
	    deploy/systemd/paramd.service >$(DESTDIR)$(SYSTEMDUNITDIR)/paramd.service
	@# The unit's drop-in for --token-file, as an example (docs/DEPLOY.md).
	sed -e 's|/usr/local/bin/paramd|$(BINDIR)/paramd|g' -e 's|/etc/paramd/|$(SYSCONFDIR)/paramd/|g' \
	    deploy/systemd/tokens.conf >$(DESTDIR)$(DOCDIR)/tokens.conf
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/paramd.service $(DESTDIR)$(DOCDIR)/tokens.conf
	@# An administrator's configuration is never overwritten.
	test -e $(DESTDIR)$(SYSCONFDIR)/paramd/paramd.conf || \
	    install -m 644 deploy/paramd.conf.example $(DESTDIR)$(SYSCONFDIR)/paramd/paramd.conf
	@# A real install (no DESTDIR) as root refreshes the dynamic linker's cache.
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED_FILES))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/paramd $(DESTDIR)$(DOCDIR) 2>/dev/null
	@# The configuration goes only if nobody changed it.
	if cmp -s deploy/paramd.conf.example $(DESTDIR)$(SYSCONFDIR)/paramd/paramd.conf; then \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/paramd/paramd.conf; \
	    rmdir $(DESTDIR)$(SYSCONFDIR)/paramd 2>/dev/null || true; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/paramd/paramd.conf ]; then \
	    echo "uninstall: kept $(DESTDIR)$(SYSCONFDIR)/paramd/paramd.conf (changed)"; \
	fi

# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

# Client tests (test_client*.c) also link the client library, before the
# server's (both hold the proto/ codec; the first one wins), and libcurl.
CLIENT_TEST_BINARIES = $(filter $(BUILD)/tests/test_client%,$(UNIT_BINARIES))
$(CLIENT_TEST_BINARIES): $(BUILD)/tests/%: tests/unit/%.c tests/unit/test_util.h \
                         tests/unit/client_harness.h $(BUILD)/libparamd.a \
                         $(BUILD)/libparamd-server.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CFLAGS_DEPS) $(shell $(PKG_CONFIG) --cflags check) -o $@ $< \
	    $(BUILD)/libparamd.a $(BUILD)/libparamd-server.a $(LDFLAGS_ALL) $(LIBS_CHECK) \
	    $(LIBS_SERVER) $(LIBS_PARAMCTL)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libparamd-server.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CFLAGS_DEPS) $(shell $(PKG_CONFIG) --cflags check) -o $@ $< \
	    $(BUILD)/libparamd-server.a $(LDFLAGS_ALL) $(LIBS_CHECK) $(LIBS_SERVER)

run: $(BUILD)/paramd
	$(BUILD)/paramd

test: $(BUILD)/paramd $(CLIENT_OUTPUTS) $(UNIT_BINARIES) $(BUILD)/paramd-bench \
      $(BUILD)/paramd-shard-bench
	@BUILD=$(BUILD) PYTHON=$(PYTHON) PARAMD_SANITIZE=$(SANITIZE) sh tests/run-tests.sh

# The concurrency tests under ThreadSanitizer (build/tsan): the unit tests
# whose code runs on several threads and the integration tests that load
# one server from many clients (test_load.py for 20 s).  Reports in the
# uninstrumented libraries that are not paramd's bugs are suppressed by
# tests/tsan.supp, each entry with its reason; any other report fails.
TSAN_UNIT_TESTS = test_parallel test_consistency test_core test_checkpoint test_push_pipeline \
                  test_patch test_metrics test_client_resilience
TSAN_INTEGRATION_TESTS = test_load test_consistency test_http test_tcp test_checkpoint
test-tsan:
	@$(MAKE) --no-print-directory SANITIZE=thread \
	    $(addprefix build/tsan/tests/,$(TSAN_UNIT_TESTS)) build/tsan/paramd
	@BUILD=build/tsan PYTHON=$(PYTHON) PARAMD_SANITIZE=thread \
	    UNIT_TESTS="$(TSAN_UNIT_TESTS)" INTEGRATION_TESTS="$(TSAN_INTEGRATION_TESTS)" \
	    TSAN_OPTIONS="suppressions=$(abspath tests/tsan.supp) halt_on_error=1 exitcode=66 second_deadlock_stack=1 $(TSAN_OPTIONS)" \
	    sh tests/run-tests.sh

bench: $(BUILD)/paramd-bench $(BUILD)/paramd $(BUILD)/paramd-shard-bench
	BUILD=$(BUILD) sh bench/run-bench.sh

# The sharded client's throughput (bench/shard-bench.sh runs it over 1 to 3
# shards); like the example, it sees only the public headers.
$(BUILD)/paramd-shard-bench: bench/shard_bench.c $(BUILD)/libparamd.a | $(DEPS_STAMP)
	$(CC) $(CFLAGS_COMMON) -o $@ $< $(BUILD)/libparamd.a $(LDFLAGS_ALL) $(LIBS_LIB)

demo: $(BUILD)/paramd
	@sh deploy/install-deps.sh --demo
	PARAMD_BINARY=$(BUILD)/paramd $(PYTHON) examples/digits/train.py --out $(BUILD)/demo \
	    --plot $(BUILD)/demo/modes.png

BENCH_SOURCES = bench/paramd-bench.c bench/http_bench.c bench/net_bench.c
$(BUILD)/paramd-bench: $(BENCH_SOURCES) bench/http_bench.h bench/net_bench.h $(BUILD)/libparamd-server.a | $(DEPS_STAMP)
	$(CC) $(CFLAGS_ALL) $(CFLAGS_DEPS) -Ibench -o $@ $(BENCH_SOURCES) \
	    $(BUILD)/libparamd-server.a $(LDFLAGS_ALL) $(LIBS_SERVER)

# Checkpoint and statistics costs (docs/PERFORMANCE.md): 64M AdamW parameters.
$(BUILD)/checkpoint-bench: bench/checkpoint_bench.c $(BUILD)/libparamd-server.a | $(DEPS_STAMP)
	$(CC) $(CFLAGS_ALL) $(CFLAGS_DEPS) -o $@ $< $(BUILD)/libparamd-server.a $(LDFLAGS_ALL) $(LIBS_SERVER)

bench-checkpoint: $(BUILD)/checkpoint-bench
	$(BUILD)/checkpoint-bench

# Every golden generator (each writes its own directory under tests/conformance).
goldens:
	sh deploy/install-deps.sh --goldens
	set -e; for script in tests/conformance/generate_*.py; do $(PYTHON) $$script; done

# libFuzzer needs clang; deploy/install-deps.sh --fuzz installs it (and
# libclang-rt-14-dev).  Every target (tests/fuzz/fuzz_NAME.c) is built with
# clang, libFuzzer, ASan and UBSan into build/fuzz/fuzz_NAME; the server
# objects the JSON targets link are compiled again the same way into
# build/fuzz/obj/ (-fsanitize=fuzzer-no-link: coverage, no main).  `make
# fuzz` runs each target for FUZZ_SECONDS (per target) on its committed
# seeds (tests/fuzz/corpus/NAME/) plus what earlier runs found
# (build/fuzz/corpus/NAME/, where new inputs go); a crash is written to
# tests/fuzz/crashes/NAME/ and stops the run.  `make test` replays both
# committed directories with the normal build (tests/unit/test_fuzz_*.c).
# The JSON targets get tests/fuzz/json.dict (the names the parsers know).
# `make fuzz-merge` minimises what the runs found into the committed corpus.
CLANG ?= clang
FUZZ_SECONDS ?= 60
FUZZ_OPTIONS ?=
FUZZ_TARGETS = frame model_config push patch shard_map
FUZZ_BUILD = build/fuzz
FUZZ_SANITIZE = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-math-errno -pthread $(WARNINGS) \
              -Iinclude -Iserver -Iproto $(FUZZ_SANITIZE) $(CFLAGS_DEPS)
FUZZ_DEPS_STAMP = build/.deps-fuzz-installed
FUZZ_SERVER_OBJECTS = $(SERVER_SOURCES:%.c=$(FUZZ_BUILD)/obj/%.o) \
                      $(PROTO_SOURCES:%.c=$(FUZZ_BUILD)/obj/%.o)

$(FUZZ_DEPS_STAMP): deploy/install-deps.sh | $(DEPS_STAMP)
	@sh deploy/install-deps.sh --fuzz
	@touch $@

$(FUZZ_BUILD)/obj/%.o: %.c | $(FUZZ_DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/obj/server/dashboard.o: server/dashboard/index.html

$(FUZZ_BUILD)/fuzz_frame: tests/fuzz/fuzz_frame.c $(FUZZ_BUILD)/obj/proto/frame.o \
                          $(FUZZ_BUILD)/obj/proto/errors.o
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^

$(FUZZ_BUILD)/fuzz_shard_map: tests/fuzz/fuzz_shard_map.c $(FUZZ_BUILD)/obj/proto/shard_map.o
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS_LIB)

$(FUZZ_BUILD)/fuzz_model_config $(FUZZ_BUILD)/fuzz_push $(FUZZ_BUILD)/fuzz_patch: \
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_server.h $(FUZZ_SERVER_OBJECTS)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_SERVER_OBJECTS) $(LIBS_SERVER)

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: fuzz-build
	@set -e; for target in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$target tests/fuzz/crashes/$$target; \
	    echo "== fuzz $$target for $(FUZZ_SECONDS) s"; \
	    dict=-dict=tests/fuzz/json.dict; [ $$target = frame ] && dict=; \
	    $(FUZZ_BUILD)/fuzz_$$target -max_total_time=$(FUZZ_SECONDS) -timeout=10 $$dict \
	        -print_final_stats=1 -artifact_prefix=tests/fuzz/crashes/$$target/ $(FUZZ_OPTIONS) \
	        $(FUZZ_BUILD)/corpus/$$target tests/fuzz/corpus/$$target; \
	done

# Adds to tests/fuzz/corpus/NAME/ the inputs of build/fuzz/corpus/NAME/
# that reach new coverage (libFuzzer's -merge=1), for committing.
fuzz-merge: fuzz-build
	@set -e; for target in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$target; \
	    $(FUZZ_BUILD)/fuzz_$$target -merge=1 tests/fuzz/corpus/$$target \
	        $(FUZZ_BUILD)/corpus/$$target; \
	done

# Rewrites the committed seed inputs: the binary frames from proto/frame.c's
# encoders, the JSON targets' seeds from tests/fuzz/make_json_corpus.py.
fuzz-corpus: tests/fuzz/make_corpus.c $(PROTO_OBJECTS)
	@mkdir -p build/fuzz tests/fuzz/corpus/frame
	$(CC) $(CFLAGS_ALL) -o build/fuzz/make_corpus tests/fuzz/make_corpus.c $(PROTO_OBJECTS)
	build/fuzz/make_corpus tests/fuzz/corpus/frame
	$(PYTHON) tests/fuzz/make_json_corpus.py tests/fuzz/corpus

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/obj-lib -name '*.d' 2>/dev/null)
ifneq ($(filter fuzz%,$(MAKECMDGOALS)),)
-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
endif
