# Thin entry points over scripts/ and CMake. `make demo` and `make test` are the way in.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: setup build test demo clean check-torch2 fuzz sanitize

setup:
	bash scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD_DIR) -G Ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cd dashboards && npm run --silent build

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

demo: build
	bash scripts/demo.sh

# Compiles the LibTorch code against LibTorch 2.6 headers (CPU and CUDA) from Debian trixie's
# packages, unpacked under build-torch2/; downloads them the first time. Not part of `make test`.
check-torch2:
	bash scripts/check_torch2.sh

# The libFuzzer harnesses (fuzz/README.md), each for FUZZ_SECONDS, in the fuzz tree that
# `make build` also makes.
FUZZ_SECONDS ?= 60
fuzz: setup
	cmake -S . -B $(BUILD_DIR)/fuzz -G Ninja -DVITSCALE_FUZZ=ON \
	  -DCMAKE_CXX_COMPILER=$$(command -v clang++-14 || command -v clang++) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD_DIR)/fuzz --target fuzzers -j $(JOBS)
	bash fuzz/run.sh $(BUILD_DIR)/fuzz $(FUZZ_SECONDS)

# The whole test suite built with ASan + UBSan in its own tree, then run; what is excluded and
# why: docs/sanitizers.md. -g1 (line tables) keeps the LibTorch builds smaller and faster.
SANITIZE_DIR ?= build-sanitize
sanitize: setup
	cmake -S . -B $(SANITIZE_DIR) -G Ninja -DVITSCALE_SANITIZE=ON \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG"
	cmake --build $(SANITIZE_DIR) -j $(JOBS)
	cd $(SANITIZE_DIR) && \
	  ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR)
