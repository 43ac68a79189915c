# twinmx build, test and run targets. Every Go module of the workspace
# (go.work) is covered; see docs/architecture.md.

GO       ?= go
MODULES  := $(shell $(GO) list -m -f '{{.Dir}}')
PKGS     := $(addsuffix /...,$(MODULES))
BIN      := bin
# Every program is a folder services/SERVICE/cmd/PROGRAM.
CMDS     := $(wildcard services/*/cmd/*)
# Targets the seed requires: Linux and Windows, 64 and 32 bit, and ARM.
TARGETS  := linux/amd64 linux/386 linux/arm64 windows/amd64 windows/386

.PHONY: all build test test-386 test-arm32 check cross bench fuzz run clean

all: build

build:
	@mkdir -p $(BIN)
	@echo "build $(notdir $(CMDS))"
	@$(GO) build -o $(CURDIR)/$(BIN)/ $(addprefix ./,$(CMDS))

# The test command of the README: static checks, then every test of every
# module under the race detector (unit, property, model-based, black-box
# with real processes and kill -9, fuzz seed corpora). The programs the
# black-box suites run are built once, into a folder they all take them
# from (proctest.PrebuiltEnv), not linked again by each suite. They are
# built without cgo, as make cross builds the programs users run: the
# same build as cross's linux/amd64, so after it they are only linked (3 s
# instead of 34 s with a cold cache; with cgo, Pebble also compiles zstd's
# C code).
test: check
	@testbin=$$(mktemp -d) && trap 'rm -rf "$$testbin"' EXIT && \
	echo "build $(notdir $(CMDS)) for the black-box tests" && \
	CGO_ENABLED=0 $(GO) build -o "$$testbin/" $(addprefix ./,$(CMDS)) && \
	echo "$(GO) test -race -count=1 -timeout 15m $(PKGS)" && \
	TWINMX_TEST_BIN="$$testbin" $(GO) test -race -count=1 -timeout 15m $(PKGS) && \
	echo "the patched go-imap's own tests (third_party: a replace target, not a workspace module)" && \
	cd third_party/go-imap && GOWORK=off $(GO) test -race -count=1 ./...

# The same tests as 32-bit programs (the seed runs on 386 too): every
# package but the black-box suites of the stateless services, which run
# the code the in-process tests already cover as 32-bit and take half of
# this run. dbd's black-box suite (kill -9 of a 32-bit dbd, Pebble on
# 32 bit) stays, and deploy's TestMakeRun starts the whole system as
# 32-bit programs and passes a mail through it.
PKGS386 = $(shell $(GO) list $(PKGS) | grep -Ev '/services/(smtpd|imapd|pop3d|spamd|backupd|smsd)/test$$')
test-386:
	CGO_ENABLED=0 GOARCH=386 $(GO) test -count=1 -timeout 15m $(PKGS386)

# Where the kernel runs no 386 programs (a 64-bit-only kernel, as on the
# Firecracker VMs of this project's CI from 2026-12-02 on), the 32-bit
# tests run as 32-bit ARM programs under qemu-user, registered with
# binfmt_misc so that tests that start their own binary again work
# (.ci/run sets it up). Emulation is about six times slower, so only the
# packages where the word size matters most: the codecs, dbd's store,
# server and tools, smtpd's delivery path, and replication.
PKGSARM = $(shell $(GO) list $(PKGS) | grep -E '/pkg/|/services/dbd/internal/|/services/smtpd/internal/(deliver|session)$$|/services/backupd/internal/replica$$')
# dbd server's TestModelBased (random operations over the wire against a
# model, 6 s natively) took 59 of the stage's 150 s under emulation; it
# runs in make test, and the codecs and the store it goes through have
# their own tests here.
test-arm32:
	CGO_ENABLED=0 GOARCH=arm GOARM=7 $(GO) test -count=1 -timeout 15m -skip '^TestModelBased$$' $(PKGSARM)

# staticcheck, pinned, fetched through the module proxy on first use (not a
# dependency of any module): unused code, suspicious constructs such as a
# comparison of an expression with itself, needless complexity.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
check:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

# Cross-compile every program for every supported platform (no cgo). One
# go build a platform builds all programs at once, linking them in
# parallel (a go build a program took 145 s for the five platforms with
# a warm cache, this 39 s).
cross:
	@set -e; for t in $(TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; echo "build $(notdir $(CMDS)) for $$os/$$arch"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -o $(CURDIR)/$(BIN)/$$os-$$arch/ $(addprefix ./,$(CMDS)); \
	done

# Benchmarks: dbd against embedded Pebble in one run, and the Go
# benchmarks of every module.
bench: build
	$(BIN)/dbctl bench --concurrency 64 --size 1024 --duration 5s --rounds 2
	$(GO) test -run XXX -bench . -benchtime 2s $(PKGS)

# A short run of every fuzz target (FUZZTIME each). A run that fails
# without writing a failing input is Go 1.26's fuzzing coordinator missing
# its own -fuzztime deadline (a bare "context deadline exceeded",
# go.dev/issue/75804; the whole-session targets, whose inputs may take
# seconds, meet it): it is reported and the next target runs.
FUZZTIME ?= 20s
fuzz:
	@set -e; for m in $(MODULES); do \
		for pkg in $$(cd $$m && $(GO) list ./...); do \
			dir=$$(cd $$m && $(GO) list -f '{{.Dir}}' $$pkg); \
			for f in $$(cd $$m && $(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
				echo "fuzz $$pkg $$f"; \
				before=$$(ls $$dir/testdata/fuzz/$$f 2>/dev/null | wc -l); \
				if ! (cd $$m && $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg); then \
					after=$$(ls $$dir/testdata/fuzz/$$f 2>/dev/null | wc -l); \
					if [ "$$after" -gt "$$before" ]; then exit 1; fi; \
					echo "fuzz $$pkg $$f: failed without a failing input (Go's coordinator deadline race); going on"; \
				fi; \
			done; \
		done; \
	done

# Start the system locally (see deploy/run-local.sh).
run: build
	deploy/run-local.sh

clean:
	rm -rf $(BIN)
