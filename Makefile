# randguard build: BPF objects (clang, CO-RE against vmlinux/), the project venv, run and test.
# `sudo make run` and `sudo make test` do all set-up on a fresh Debian 12 machine.

CLANG      ?= clang
GCC        ?= gcc
PYTHON     ?= /usr/bin/python3
VENV       := .venv
VPY        := $(VENV)/bin/python
ARCH       := x86
BPF_SRC    := $(wildcard bpf_src/*.bpf.c)
BPF_OUT    := agent/randguard/bpf
BPF_OBJS   := $(patsubst bpf_src/%.bpf.c,$(BPF_OUT)/%.bpf.o,$(BPF_SRC))
BPF_HDRS   := $(wildcard bpf_src/*.h)
APT_BUILD  := clang libbpf-dev make bpftool gcc libc6-dev
APT_RUN    := libbpf1 python3 python3-venv
CONFIG     ?= config/randguard.toml
PYTEST_ARGS ?=

.PHONY: all deps venv run test test-unit test-kernel lint check-config clean deb test-deb

TEST_BPF_SRC  := $(wildcard tests/bpf/*.bpf.c)
TEST_BPF_OBJS := $(patsubst tests/bpf/%.bpf.c,build/tests/%.bpf.o,$(TEST_BPF_SRC))
TEST_BIN_SRC  := $(wildcard tests/bin/*.c)
TEST_BINS     := $(patsubst tests/bin/%.c,build/tests/%,$(TEST_BIN_SRC))

# apt-get install whichever of the packages $(1) is missing ($(2): more apt-get options);
# progress on stderr, so that `make run`'s stdout stays the event stream.
define apt_ensure
@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing" >&2; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: need root to apt-get install$$missing" >&2; exit 1; fi; \
	  apt-get -o Acquire::Retries=3 update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get -o Acquire::Retries=3 install -y -qq $(2) $$missing >&2; \
	fi
endef

all: $(BPF_OBJS)

# Install what the build and the agent need, only where it is missing.
deps: .deps-stamp
.deps-stamp:
	$(call apt_ensure,$(APT_BUILD) $(APT_RUN))
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "python3 >= 3.11 required"'
	@touch $@

$(BPF_OUT)/%.bpf.o: bpf_src/%.bpf.c $(BPF_HDRS) | .deps-stamp
	@mkdir -p $(BPF_OUT)
	$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	  -Ivmlinux -Ibpf_src -I/usr/include -c $< -o $@

# Small objects used only by the binding's own kernel tests.
build/tests/%.bpf.o: tests/bpf/%.bpf.c | .deps-stamp
	@mkdir -p build/tests
	$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	  -Ivmlinux -Ibpf_src -I/usr/include -c $< -o $@

# Helper programs of the kernel tests (i386ops: syscalls through int $0x80). Static, so that
# the qemu guests of test-kernels run them without a matching libc.
build/tests/%: tests/bin/%.c | .deps-stamp
	@mkdir -p build/tests
	$(GCC) -O2 -static -no-pie -Wall -Werror $< -o $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml | .deps-stamp
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

# stdout is the NDJSON stream only (`sudo make run | jq`): set-up output goes to stderr.
run:
	@$(MAKE) --no-print-directory all venv >&2
	@exec $(VENV)/bin/randguard run --config $(CONFIG) --state-file $(CURDIR)/.cache/inventory.state

check-config: venv
	$(VENV)/bin/randguard check-config $(CONFIG)

lint: venv
	$(VENV)/bin/ruff check .

# The whole suite: unit tests of the pure core and kernel tests that load the real objects,
# then the kernel tests again on other kernels under qemu (test-kernels, docs/kernels.md), then
# the .deb on a booted Debian 12 (test-deb, docs/packaging.md).
test: all $(TEST_BPF_OBJS) $(TEST_BINS) venv
	$(VENV)/bin/ruff check .
	$(VPY) -m pytest -ra $(PYTEST_ARGS)
	@# (the agent_start probe after each kernel's tests only feeds docs/kernels.md's table)
	@$(MAKE) --no-print-directory test-kernels KERNELS_ARGS="--no-probe $(KERNELS_ARGS)"
	@$(MAKE) --no-print-directory test-deb

test-unit: venv
	$(VPY) -m pytest -ra -m "not kernel" $(PYTEST_ARGS)

test-kernel: all $(TEST_BPF_OBJS) $(TEST_BINS) venv
	$(VPY) -m pytest -ra -m kernel $(PYTEST_ARGS)

# The kernel tests on Debian's 5.10, 6.1, 6.12 and newest (sid) kernels, each booted under qemu
# with the objects built here: a pass/fail table per kernel and test (docs/kernels.md). Kernels
# and the guest image are cached in .cache/kernels/. KERNELS=5.10,sid picks kernels (default:
# every series vm/kernels.py knows), KERNEL_TESTS="tests/kernel/test_x.py ..." the test files,
# KERNELS_ARGS more options (python3 vm/kernels.py --help).
.PHONY: test-kernels
APT_VM       := qemu-system-x86 debootstrap
KERNELS      ?=
KERNEL_TESTS ?=
KERNELS_ARGS ?=
test-kernels: all $(TEST_BPF_OBJS) $(TEST_BINS) venv .vm-deps-stamp
	$(PYTHON) vm/kernels.py $(if $(KERNELS),--kernels $(KERNELS)) \
	  $(if $(KERNEL_TESTS),--tests $(KERNEL_TESTS)) $(KERNELS_ARGS)

.vm-deps-stamp:
	$(call apt_ensure,$(APT_VM),--no-install-recommends)
	@touch $@

# The Debian package: dist/randguard_<version>_amd64.deb (docs/packaging.md), built with
# debhelper from the objects `all` compiled, then checked with lintian (no errors allowed).
APT_DEB    := debhelper dpkg-dev lintian bpftool python3-pip python3-setuptools python3-wheel \
              python3-venv
APT_DEBVM  := qemu-system-x86 debootstrap dpkg-dev cpio
DEB_VERSION = $(shell dpkg-parsechangelog -l packaging/debian/changelog -SVersion)
DEB        = dist/randguard_$(DEB_VERSION)_amd64.deb

deb: all
	$(call apt_ensure,$(APT_DEB),--no-install-recommends)
	packaging/build-deb

# Boots Debian 12 (its own kernel, systemd as PID 1) under qemu, installs the .deb with apt and
# runs the service's life cycle (tests/deb/run.py). Needs root; caches in .cache/deb-vm/.
test-deb: deb
	$(call apt_ensure,$(APT_DEBVM),--no-install-recommends)
	$(PYTHON) tests/deb/run.py $(DEB)

clean:
	rm -rf $(BPF_OUT) build .deps-stamp .vm-deps-stamp

# Benchmarks against opensnoop and auditd (root; starts and stops auditd, see bench/bench.py):
# writes docs/benchmarks.md and docs/benchmarks.json. BENCH_ARGS=--long adds the 10-minute soak.
# Not part of `make test`: performance is measured by the benchmark, never by a timed test.
.PHONY: bench
BENCH_ARGS ?=
bench: all venv
	$(PYTHON) bench/bench.py $(BENCH_ARGS)
