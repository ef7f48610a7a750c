# Thin entry points over scripts/ and CMake. `make demo` and `make test` are the way in.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: setup build test demo clean fuzz sanitize

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

# The libFuzzer harnesses (fuzz/README.md), each for FUZZ_SECONDS, in the fuzz tree that
# `make build` also makes.
FUZZ_SECONDS ?= 60
fuzz: setup
	cmake -S . -B $(BUILD_DIR)/fuzz -G Ninja -DVITSCALE_FUZZ=ON \
	  -DCMAKE_CXX_COMPILER=$$(command -v clang++-14 || command -v clang++) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD_DIR)/fuzz --target fuzzers -j $(JOBS)
	bash fuzz/run.sh $(BUILD_DIR)/fuzz $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD_DIR)
