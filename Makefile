# chatq — build, test, demo and benchmark.
#
# `make` builds the three programs; `make test`, `make demo`, `make asan`,
# `make bench` first run scripts/deps.sh, which installs any missing Debian
# package (apt-get, as root or through sudo) and does nothing when all are there.
#
# Every .c file under common/ goes into libchatq.a; the files of worker/,
# daemon/ and cli/ but their main.c go into libworker.a, libdaemon.a and
# libcli.a, so unit tests can link any module; each program links its main.c
# with its library and libchatq.a. Adding a module needs no Makefile change.

CC      ?= cc
PKGS    := libuv hiredis libcurl json-c libcrypto libmicrohttpd
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
override LDLIBS += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
BUILD   ?= build

COMMON_SRC := $(wildcard common/*.c)
WORKER_SRC := $(wildcard worker/*.c)
DAEMON_SRC := $(wildcard daemon/*.c)
CLI_SRC    := $(wildcard cli/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
LIB   := $(BUILD)/libchatq.a
WLIB  := $(BUILD)/libworker.a
DLIB  := $(BUILD)/libdaemon.a
CLIB  := $(BUILD)/libcli.a
PROGS := $(BUILD)/chatqd $(BUILD)/chatq-worker $(BUILD)/chatq
UNITS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps test unit e2e asan demo bench bench-compare chaos clean install
# keep object files of the test programs between runs
.SECONDARY:
all: $(PROGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(call obj,$(COMMON_SRC))
	@rm -f $@
	$(AR) rcs $@ $^
$(WLIB): $(call obj,$(filter-out worker/main.c,$(WORKER_SRC)))
	@rm -f $@
	$(AR) rcs $@ $^
$(DLIB): $(call obj,$(filter-out daemon/main.c,$(DAEMON_SRC)))
	@rm -f $@
	$(AR) rcs $@ $^
$(CLIB): $(call obj,$(filter-out cli/main.c,$(CLI_SRC)))
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/chatqd: $(BUILD)/daemon/main.o $(DLIB) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/chatq-worker: $(BUILD)/worker/main.o $(WLIB) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/chatq: $(BUILD)/cli/main.o $(CLIB) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# A worker with test-only hooks (see CHATQ_TEST_HOOKS in worker/jobrun.c) for
# the end-to-end tests; `make all` and `make install` never build it.
$(BUILD)/testhooks/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DCHATQ_TEST_HOOKS -MMD -MP -c $< -o $@
$(BUILD)/chatq-worker-testhooks: $(patsubst %.c,$(BUILD)/testhooks/%.o,$(WORKER_SRC)) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/testutil.o $(CLIB) $(WLIB) $(DLIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

deps:
	@sh scripts/deps.sh

# `make test`: install what is missing, build, run the unit tests, then the
# end-to-end tests (real redis-server, stand-in upstream, real chatqd).
test: deps
	@$(MAKE) --no-print-directory all $(UNITS)
	@$(MAKE) --no-print-directory unit e2e

unit: $(UNITS)
	@sh scripts/run-unit.sh $(UNITS)

e2e: $(PROGS) $(BUILD)/chatq-worker-testhooks
	CHATQ_BIN=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e

# AddressSanitizer + UndefinedBehaviorSanitizer build in its own directory.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all unit e2e

demo: deps all
	@sh scripts/demo.sh

# the throughput benchmark, then the batch client's memory on 100,000 lines
# (CHATQ_BENCH_BATCH=0 skips the latter)
bench: deps all
	@sh bench/run.sh
	@if [ "$${CHATQ_BENCH_BATCH:-1}" != 0 ]; then sh bench/batch_memory.sh; fi

# chatq side by side with the BullMQ peer: the shared benchmark
# (../shared/bench/compare.sh, REPEAT 3) against this tree, then its plots;
# bench/compare.sh says where it looks for ../shared and why it runs a copy.
# Without the shared benchmark it says so and stops.
bench-compare: deps all
	@sh bench/compare.sh $${REPEAT:-3}

# `make chaos`: the soak test that kills workers, whole chatqds and Redis
# while jobs run, then checks that every job has exactly one result; then
# the kill-storm and poison-pill scenarios of tests/chaos/storm.py.
chaos: deps all $(BUILD)/chatq-worker-testhooks
	CHATQ_BIN=$(abspath $(BUILD)) /usr/bin/python3 tests/chaos/soak.py
	CHATQ_BIN=$(abspath $(BUILD)) /usr/bin/python3 tests/chaos/storm.py

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
include mk/install.mk
include mk/fuzz.mk
