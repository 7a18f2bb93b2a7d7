# theframework — every target does its own set-up on a fresh machine (see scripts/bootstrap.sh).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ASAN_VENV := .venv-asan
ASAN_PY := $(ASAN_VENV)/bin/python
CMAKE = $(VENV)/bin/cmake
NATIVE_SOURCES := $(shell find src -name '*.cpp' -o -name '*.hpp') CMakeLists.txt pyproject.toml
# The editable install maps each Python module by name: a new module needs a reinstall.
PYTHON_MODULES := $(shell find theframework -name '*.py')
PYTEST_ARGS ?=

.PHONY: all build run test cpp-test pytest test-pythons wheel test-wheel asan lint format fuzz bench clean

all: build

$(VENV)/.deps: scripts/bootstrap.sh pyproject.toml
	scripts/bootstrap.sh $(PYTHON) $(VENV)
	$(PY) -m pip install -q --no-build-isolation -e '.[test]'
	touch $@

$(VENV)/.built: $(VENV)/.deps $(NATIVE_SOURCES) $(PYTHON_MODULES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

build: $(VENV)/.built

run: build
	$(PY) -m theframework examples.hello:app --host 127.0.0.1 --port 8000

test: cpp-test pytest test-pythons

cpp-test: $(VENV)/.deps
	$(CMAKE) -S . -B build/cpp -G Ninja -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja \
	  -DTHEFRAMEWORK_TESTS=ON -DTHEFRAMEWORK_PYTHON=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
	$(CMAKE) --build build/cpp
	cd build/cpp && ../../$(VENV)/bin/ctest --output-on-failure -j2

pytest: build
	$(PY) -m pytest $(PYTEST_ARGS)

# The pre-fork, HTTP and monkey suites on every CPython >= 3.10 the machine has (one venv each),
# then on CPython 3.14 in a Debian unstable root (scripts/py314_root.sh, cached in build/).
test-pythons: $(VENV)/.deps
	scripts/test_all_pythons.sh -q
	scripts/py314_root.sh -q

# Release wheels for every CPython >= 3.10 on the machine, repaired by auditwheel into
# manylinux_*_x86_64 wheels in dist/ (scripts/build_wheels.sh prints each one's `auditwheel show`),
# and the source distribution beside them.
wheel: $(VENV)/.deps
	scripts/build_wheels.sh --sdist dist

# The running interpreter's wheel installed where nothing can be compiled and serving hello world,
# and the source build's messages for what a machine lacks (both are part of `make pytest` too).
test-wheel: $(VENV)/.deps
	$(PY) -m pytest -p no:cacheprovider tests/test_wheel.py tests/test_source_build.py $(PYTEST_ARGS)

# The pytest suite against a build of the extension with AddressSanitizer and UBSan. Python itself
# is not instrumented, so libasan is preloaded; leak detection is off (CPython keeps objects alive
# at exit by design).
$(ASAN_VENV)/.built: $(VENV)/.deps $(NATIVE_SOURCES) $(PYTHON_MODULES)
	scripts/bootstrap.sh $(PYTHON) $(ASAN_VENV)
	$(ASAN_PY) -m pip install -q --no-build-isolation -e '.[test]' \
	  -C cmake.build-type=Debug -C cmake.define.THEFRAMEWORK_SANITIZE=ON \
	  -C build-dir=build/asan-{wheel_tag}
	touch $@

asan: $(ASAN_VENV)/.built
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	THEFRAMEWORK_SANITIZED=1 \
	  $(ASAN_PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# ruff (with complexity rules), mypy --strict, the import contracts (pyproject.toml), clang-format.
lint: $(VENV)/.deps
	$(VENV)/bin/ruff check theframework tests examples bench
	$(VENV)/bin/ruff format --check theframework tests examples bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	clang-format --dry-run --Werror $$(find src tests/cpp fuzz -name '*.cpp' -o -name '*.hpp') bench/*.cpp
	@! grep -rn 'Python.h' src/core || (echo 'src/core must not include Python.h' >&2; false)

format: $(VENV)/.deps
	$(VENV)/bin/ruff format theframework tests examples bench
	$(VENV)/bin/ruff check --fix theframework tests examples bench
	clang-format -i $$(find src tests/cpp fuzz -name '*.cpp' -o -name '*.hpp')

# libFuzzer over the HTTP parser, the PROXY protocol and forwarding-header parsers and the WebSocket
# framing, FUZZ_SECONDS each (CI runs a short one). Each target has its seed corpus in fuzz/ and its
# working corpus in build/fuzz/.
FUZZ_SECONDS ?= 60
fuzz: $(VENV)/.deps
	CXX=clang++ $(CMAKE) -S . -B build/fuzz -G Ninja -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja \
	  -DTHEFRAMEWORK_FUZZ=ON -DTHEFRAMEWORK_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	$(CMAKE) --build build/fuzz
	mkdir -p build/fuzz/corpus build/fuzz/corpus_proxy build/fuzz/corpus_websocket
	build/fuzz/http_parser_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  build/fuzz/corpus fuzz/corpus
	build/fuzz/proxy_protocol_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=1024 \
	  build/fuzz/corpus_proxy fuzz/corpus_proxy
	build/fuzz/websocket_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
	  build/fuzz/corpus_websocket fuzz/corpus_websocket

# The benchmark harness (bench/README.md): peers in bench/.venv-peers, results in bench/results/;
# then the WebSocket benchmarks (echo, broadcast, idle memory; bench/results/websocket_*.md).
BENCH_ARGS ?=
bench: build
	bench/setup.sh $(PYTHON)
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/websocket_echo.py --output bench/results/websocket_echo.md
	$(PY) bench/websocket_broadcast.py --output bench/results/websocket_broadcast.md
	$(PY) bench/websocket_idle.py --output bench/results/websocket_idle.md

clean:
	rm -rf build $(VENV) $(ASAN_VENV) .venv-py3.*
