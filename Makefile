# randguard build: BPF objects (clang, CO-RE against vmlinux/), the project venv, run and test.
# `sudo make run` and `sudo make test` do all set-up on a fresh Debian 12 machine.

CLANG      ?= clang
PYTHON     ?= /usr/bin/python3
VENV       := .venv
VPY        := $(VENV)/bin/python
ARCH       := x86
BPF_SRC    := $(wildcard bpf_src/*.bpf.c)
BPF_OUT    := agent/randguard/bpf
BPF_OBJS   := $(patsubst bpf_src/%.bpf.c,$(BPF_OUT)/%.bpf.o,$(BPF_SRC))
BPF_HDRS   := $(wildcard bpf_src/*.h)
APT_BUILD  := clang libbpf-dev make bpftool
APT_RUN    := libbpf1 python3 python3-venv
CONFIG     ?= config/randguard.toml
PYTEST_ARGS ?=

.PHONY: all deps venv run test test-unit test-kernel lint check-config clean

TEST_BPF_SRC  := $(wildcard tests/bpf/*.bpf.c)
TEST_BPF_OBJS := $(patsubst tests/bpf/%.bpf.c,build/tests/%.bpf.o,$(TEST_BPF_SRC))

all: $(BPF_OBJS)

# Install what the build and the agent need, only where it is missing.
deps: .deps-stamp
.deps-stamp:
	@missing=""; \
	for p in $(APT_BUILD) $(APT_RUN); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: need root to apt-get install$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
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

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml | .deps-stamp
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

# stdout is the NDJSON stream only (`sudo make run | jq`): set-up output goes to stderr.
run:
	@$(MAKE) --no-print-directory all venv >&2
	@exec $(VENV)/bin/randguard run --config $(CONFIG)

check-config: venv
	$(VENV)/bin/randguard check-config $(CONFIG)

lint: venv
	$(VENV)/bin/ruff check .

# The whole suite: unit tests of the pure core and kernel tests that load the real objects.
test: all $(TEST_BPF_OBJS) venv
	$(VENV)/bin/ruff check .
	$(VPY) -m pytest -ra $(PYTEST_ARGS)

test-unit: venv
	$(VPY) -m pytest -ra -m "not kernel" $(PYTEST_ARGS)

test-kernel: all $(TEST_BPF_OBJS) venv
	$(VPY) -m pytest -ra -m kernel $(PYTEST_ARGS)

clean:
	rm -rf $(BPF_OUT) build .deps-stamp
