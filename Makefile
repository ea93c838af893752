# anneal — build, test, install.
#
#   make            build bin/anneal (and its helpers)
#   make demo       run the demonstration recipe (installs missing deps as root)
#   make test       unit tests (CMocka) + end-to-end scripts
#   make test SAN=1 the same under ASan+UBSan (build-san/)
#   make test-slurm the Slurm runner against a real single-node cluster (root)
#   make test-valgrind  the end-to-end subset under valgrind memcheck
#   make torture    crash torture (TORTURE=short: the CI version)
#   make fuzz       libFuzzer targets, FUZZ_SECONDS (60) each (clang)
#   make bench      benchmarks against ninja, Snakemake, openssl, NumPy, sbatch
#   make install PREFIX=/usr/local
#
# Every module's sources are found by wildcard: add a .c file, it is built.

PREFIX ?= /usr/local
CC ?= cc
PKGS := sqlite3 libgit2 libcjson libarchive libcrypto
TEST_PKGS := cmocka
DEB_PKGS := pkg-config libsqlite3-dev libgit2-dev libcjson-dev libarchive-dev \
            libcmocka-dev libssl-dev

ifeq ($(SAN),1)
BUILD := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
else
BUILD := build
SANFLAGS :=
OPT := -O2 -g
endif
BIN := $(if $(filter 1,$(SAN)),$(BUILD)/bin,bin)
# The shim starts once per step: linked statically it skips the dynamic
# loader (measured here: 0.15-0.5 ms a step). Sanitizer builds cannot be.
SHIM_LDFLAGS := $(if $(filter 1,$(SAN)),,-static)

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Wformat=2 -Wvla
CFLAGS ?= $(OPT)
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -I. $(PKG_CFLAGS) -MMD -MP
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS) -pthread

LIB_SRC := $(wildcard base/*.c pipeline/*.c stages/*.c artifacts/*.c runners/*.c) engine/config.c
LIB_SRC := $(filter-out runners/shim.c,$(LIB_SRC))
# The reference engine (bin/anneal-engine): its numerics are built with
# -O3 (vectorised loops) and -ffp-contract=off (no fused multiply-add), so
# that the same inputs give the same bits whatever the CPU.
ENGINE_SRC := $(filter-out engine/config.c engine/main.c,$(wildcard engine/*.c))
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
ENGINE_OPT := $(if $(filter 1,$(SAN)),,-O3) -ffp-contract=off -fno-math-errno
CLI_SRC := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/*/test_*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
ENGINE_TEST_BIN := $(filter $(BUILD)/tests/engine/%,$(TEST_BIN))

.PHONY: all deps demo test unit e2e install clean bench check-warnings test-slurm test-valgrind torture
all: $(BIN)/anneal $(BIN)/anneal-shim $(BIN)/anneal-engine

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/engine/%.o: engine/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ENGINE_OPT) -c $< -o $@

$(BUILD)/libengine.a: $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/anneal-engine: $(BUILD)/engine/main.o $(BUILD)/libengine.a $(BUILD)/libanneal.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(BUILD)/engine/main.o $(BUILD)/libengine.a $(BUILD)/libanneal.a $(PKG_LIBS)

$(BUILD)/libanneal.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/anneal: $(CLI_OBJ) $(BUILD)/libanneal.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libanneal.a $(PKG_LIBS)

# The per-step supervisor: libc only, so that starting it costs one exec.
$(BIN)/anneal-shim: runners/shim.c
	@mkdir -p $(dir $@)
	@mkdir -p $(BUILD)/runners
	$(CC) $(ALL_CFLAGS) -MF $(BUILD)/runners/shim.d $(ALL_LDFLAGS) $(SHIM_LDFLAGS) -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libanneal.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libanneal.a $(PKG_LIBS) $(TEST_LIBS)

$(BUILD)/tests/engine/%: tests/engine/%.c $(BUILD)/libengine.a $(BUILD)/libanneal.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libengine.a $(BUILD)/libanneal.a $(PKG_LIBS) $(TEST_LIBS)

# deps: check the libraries; as root on Debian/Ubuntu install what is missing.
deps:
	@if pkg-config --exists $(PKGS) $(TEST_PKGS) 2>/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "deps: installing $(DEB_PKGS)"; \
		apt-get update -q -o DPkg::Lock::Timeout=300 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
			build-essential $(DEB_PKGS) || exit 3; \
	else \
		echo "deps: missing libraries; install them with:"; \
		echo "  sudo apt-get update && sudo apt-get install -y build-essential $(DEB_PKGS)"; \
		exit 3; \
	fi

# The main job: the Pangu Embedded pipeline (recipes/pangu-embedded.json) on
# the reference engine, in the demo workspace demo/ (git-ignored, created on
# first use), then every checkpoint's eval scores and the final model's
# lineage. A second `make demo` finds every step cached.
DEMO_WS ?= demo
demo: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p $(DEMO_WS)
	bin/anneal -C $(DEMO_WS) run recipes/pangu-embedded.json
	@echo
	bin/anneal -C $(DEMO_WS) report
	@echo
	bin/anneal -C $(DEMO_WS) lineage pangu-embedded

# Any sanitizer report fails the test that triggered it.
SAN_ENV := ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

unit: $(TEST_BIN)
	@fail=0; for t in $(TEST_BIN); do \
		echo "== $$t"; $(SAN_ENV) $$t || fail=1; \
	done; exit $$fail

e2e: $(BIN)/anneal $(BIN)/anneal-shim $(BIN)/anneal-engine
	@$(SAN_ENV) ANNEAL_BIN=$(CURDIR)/$(BIN)/anneal SAN=$(SAN) sh tests/e2e/run-all.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory e2e

# The Slurm runner against a real single-node cluster on loopback
# (tests/slurm/start.sh: installs slurm-wlm and munge when missing; needs
# root). Stops exactly what it started, whatever the outcome.
SLURM_RUNDIR ?= /tmp/anneal-slurm
test-slurm: all $(BUILD)/tests/runners/test_slurm
	@bash tests/slurm/start.sh $(SLURM_RUNDIR) >/dev/null || exit 3; \
	. $(SLURM_RUNDIR)/env; rc=0; \
	echo "== $(BUILD)/tests/runners/test_slurm (real cluster)"; \
	$(SAN_ENV) $(BUILD)/tests/runners/test_slurm || rc=1; \
	echo "== tests/slurm/test_smoke.sh"; \
	bash tests/slurm/test_smoke.sh $(SLURM_RUNDIR) || rc=1; \
	echo "== tests/slurm/test_runner.sh"; \
	$(SAN_ENV) ANNEAL_BIN=$(CURDIR)/$(BIN)/anneal SAN=$(SAN) sh tests/slurm/test_runner.sh || rc=1; \
	bash tests/slurm/stop.sh $(SLURM_RUNDIR) >/dev/null; exit $$rc

# The end-to-end subset under valgrind memcheck (tests/valgrind/run.sh: the
# scripts that exercise anneal's own code; no error, no definite or indirect
# leak in any anneal process). Installs valgrind when missing, as root.
test-valgrind: all
	@sh tests/valgrind/run.sh

# Benchmarks against peers, as ratios measured in one run (not tests).
bench: all
	sh bench/dag/run.sh
	sh bench/ingest/run.sh
	sh bench/lineage/run.sh
	sh bench/merge/run.sh
	sh bench/slurm/run.sh
	sh bench/rss/run.sh

# Crash torture (tests/torture/run.sh documents it): the Pangu recipe
# kill -9'd at random instants (the driver, a step's engine, both) and at
# every fault-injection window, resumed after each kill and checked (every
# step ran to completion once, no recorded byte lost, audit clean, the same
# final model); ends with a table of the figures.
#   make torture                  50 kills a mode (by hand: several minutes)
#   make torture TORTURE=short    8 kills a mode, smaller steps (CI: ~1-2 min)
#   TORTURE_KILLS=N TORTURE_SEED=S TORTURE_ONLY=anneal,engine,both,windows
TORTURE ?= long
torture: $(BIN)/anneal $(BIN)/anneal-shim $(BIN)/anneal-engine
	@$(SAN_ENV) ANNEAL_BIN=$(CURDIR)/$(BIN)/anneal SAN=$(SAN) TORTURE=$(TORTURE) \
		$(if $(TORTURE_KILLS),TORTURE_KILLS=$(TORTURE_KILLS)) \
		$(if $(TORTURE_SEED),TORTURE_SEED=$(TORTURE_SEED)) \
		$(if $(TORTURE_ONLY),TORTURE_ONLY=$(TORTURE_ONLY)) \
		sh tests/torture/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/libexec/anneal
	install -m 755 bin/anneal $(DESTDIR)$(PREFIX)/bin/anneal
	install -m 755 bin/anneal-shim $(DESTDIR)$(PREFIX)/libexec/anneal/anneal-shim
	install -m 755 bin/anneal-engine $(DESTDIR)$(PREFIX)/bin/anneal-engine

clean:
	rm -rf build build-san build-fuzz bin

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(ENGINE_OBJ:.o=.d) $(BUILD)/engine/main.d

# ---- fuzz: libFuzzer targets (clang) ----
#   make fuzz                   each tests/fuzz/fuzz_*.c for FUZZ_SECONDS (60)
#   make fuzz FUZZ_SECONDS=10   a CI-length run
#   make fuzz FUZZ_TARGETS="recipe bundle"   only those
# Seeds live in tests/fuzz/corpus/<name>/ (read only); what the fuzzer finds
# goes to build-fuzz/corpus/<name>/, crashes to build-fuzz/crash-*. Exit
# status non-zero on the first crash, leak or sanitizer report. Targets
# that need files make them under TMPDIR: a tmpfs (/dev/shm) when there is
# one, since mkdir(2) on a disk is what a bundle import mostly costs.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -g -O1 -fno-omit-frame-pointer \
               $(FUZZ_SAN) -I. $(PKG_CFLAGS) -MMD -MP
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_ALL := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_RUN := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_TMPDIR ?= $(if $(wildcard /dev/shm/.),/dev/shm,/tmp)
# Largest input per target, NAME=BYTES (others: libFuzzer's guess from
# the seeds): recipes and tar streams need room, a REF does not.
FUZZ_MAX_LEN := recipe=32768 bundle=32768 ref=512

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BIN)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libanneal.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libanneal.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libanneal.a \
		$(PKG_LIBS) -pthread

fuzz: $(FUZZ_RUN)
	@for n in $(FUZZ_TARGETS); do \
		b=$(FUZZ_BUILD)/fuzz_$$n; seeds=tests/fuzz/corpus/$$n; \
		dict=tests/fuzz/fuzz_$$n.dict; ml=; \
		for kv in $(FUZZ_MAX_LEN); do \
			[ "$${kv%%=*}" = "$$n" ] && ml=-max_len=$${kv#*=}; \
		done; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
		echo "== $$b for $(FUZZ_SECONDS) s"; \
		TMPDIR=$(FUZZ_TMPDIR) $$b -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
			-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/ \
			$$( [ -f $$dict ] && echo -dict=$$dict ) \
			$$ml \
			$(FUZZ_BUILD)/corpus/$$n $$( [ -d $$seeds ] && echo $$seeds ) \
			|| exit 1; \
	done

-include $(FUZZ_LIB_OBJ:.o=.d)
