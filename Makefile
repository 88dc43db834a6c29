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
#   make bench      build and run paramd-bench (bench/shard-bench.sh: the sharded client)
#   make bench-checkpoint   checkpoint time of 64M AdamW parameters, stats cost per push
#   make demo       distributed training of an MLP on scikit-learn's digits: 4 worker
#                   processes (paramd.torch.RemoteOptimizer) against 2 shards, async,
#                   sync and ssp; writes $(BUILD)/demo/modes.png and prints each mode's
#                   test accuracy (installs python3-sklearn and python3-matplotlib)
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
        fuzz-corpus install uninstall demo FORCE
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
SHARED_DEFS = $(if $(filter 1,$(SANITIZE)),,-Wl,-z,defs)
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
	@BUILD=$(BUILD) PYTHON=$(PYTHON) sh tests/run-tests.sh

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

-include $(shell find $(BUILD)/obj $(BUILD)/obj-lib -name '*.d' 2>/dev/null)
