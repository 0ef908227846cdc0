# mk/fuzz.mk — `make fuzz`: libFuzzer targets built with clang, in their own
# build directory, each run for a bounded time. Included by the Makefile.
#
#   make fuzz                      every target, FUZZ_SECONDS (60) each
#   make fuzz FUZZ_TARGETS=sse     some targets only
#   make fuzz FUZZ_SECONDS=600     longer
#   make fuzz-build                build only
#
# The targets are tests/fuzz/fuzz_<name>.c. The code under test is built
# once more, by a sub-make of the main Makefile (its rules, BUILD=$(FUZZ_BUILD))
# with clang and -fsanitize=fuzzer-no-link,address,undefined, so nothing of
# build/ is touched. Each run reads the seed corpus tests/fuzz/corpus/<name>/
# and the inputs that once crashed it, tests/fuzz/crashes/<name>/ (so a fix
# is checked and stays fixed), and writes what it finds to
# $(FUZZ_BUILD)/corpus/<name>/ (kept between runs, never committed). A crash,
# a leak, undefined behaviour, a timeout (FUZZ_TIMEOUT s for one input) or a
# failed check of the target stops that target and leaves the input in
# $(FUZZ_BUILD)/artifacts/<name>/; `make fuzz` runs the other targets, then
# fails, listing them. Replay one: $(FUZZ_BUILD)/fuzz/<name> FILE.

FUZZ_TARGETS ?= sse job assembler batchin config json
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 25
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN)
# the longest input each target is given, in bytes
FUZZ_MAXLEN_sse       := 16384
FUZZ_MAXLEN_job       := 65536
FUZZ_MAXLEN_assembler := 65536
FUZZ_MAXLEN_batchin   := 32768
FUZZ_MAXLEN_config    := 16384
FUZZ_MAXLEN_json      := 65536
# extra options per target (batchin prints every bad line on stderr)
FUZZ_OPTS_batchin     := -close_fd_mask=2

FUZZ_BINS := $(patsubst %,$(FUZZ_BUILD)/fuzz/%,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-build fuzz-deps fuzz-libs fuzz-clean

# clang and libFuzzer are needed only here, so only `make fuzz` installs
# them. The .gitignore keeps the build directory out of git.
fuzz-deps:
	@CHATQ_DEPS_EXTRA="clang libclang-rt-14-dev" sh scripts/deps.sh
	@mkdir -p $(FUZZ_BUILD) && echo '*' > $(FUZZ_BUILD)/.gitignore

# The libraries of the main Makefile, instrumented. A sub-make, so its
# pattern rules and dependency files apply to $(FUZZ_BUILD) as to build/.
fuzz-libs: fuzz-deps
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
	  CFLAGS="$(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link" \
	  $(FUZZ_BUILD)/libchatq.a $(FUZZ_BUILD)/libcli.a

$(FUZZ_BUILD)/fuzz/%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_memfd.h fuzz-libs
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
	  $(FUZZ_BUILD)/libcli.a $(FUZZ_BUILD)/libchatq.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

# One target after the other (the machine may be small); a failing one does
# not stop the rest, and the exit status says whether any failed.
fuzz: fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  seeds=; [ -d tests/fuzz/corpus/$$t ] && seeds=tests/fuzz/corpus/$$t; \
	  crashes=; [ -d tests/fuzz/crashes/$$t ] && crashes=tests/fuzz/crashes/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  case $$t in \
	    sse) opts="-max_len=$(FUZZ_MAXLEN_sse) $(FUZZ_OPTS_sse)";; \
	    job) opts="-max_len=$(FUZZ_MAXLEN_job) $(FUZZ_OPTS_job)";; \
	    assembler) opts="-max_len=$(FUZZ_MAXLEN_assembler) $(FUZZ_OPTS_assembler)";; \
	    batchin) opts="-max_len=$(FUZZ_MAXLEN_batchin) $(FUZZ_OPTS_batchin)";; \
	    config) opts="-max_len=$(FUZZ_MAXLEN_config) $(FUZZ_OPTS_config)";; \
	    json) opts="-max_len=$(FUZZ_MAXLEN_json) $(FUZZ_OPTS_json)";; \
	    *) opts="";; \
	  esac; \
	  dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	  if ! $(FUZZ_BUILD)/fuzz/$$t $$opts $$dict -max_total_time=$(FUZZ_SECONDS) \
	       -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
	       -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ \
	       $(FUZZ_BUILD)/corpus/$$t $$seeds $$crashes \
	       > $(FUZZ_BUILD)/$$t.log 2>&1; then \
	    failed="$$failed $$t"; \
	    echo "fuzz: $$t FAILED: see $(FUZZ_BUILD)/$$t.log and $(FUZZ_BUILD)/artifacts/$$t/"; \
	    grep -m1 -A12 "^fuzz_[a-z]*: \|ERROR:\|runtime error\|deadly signal\|Test unit written" \
	      $(FUZZ_BUILD)/$$t.log || tail -20 $(FUZZ_BUILD)/$$t.log; \
	  else \
	    grep "stat::number_of_executed_units\|stat::peak_rss_mb" $(FUZZ_BUILD)/$$t.log \
	      | tr '\n' ' ' | sed "s/^/fuzz: $$t ok: /"; echo; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

fuzz-clean:
	rm -rf $(FUZZ_BUILD)
clean: fuzz-clean
