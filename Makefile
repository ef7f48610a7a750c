# Thin entry points over scripts/ and CMake. `make demo` and `make test` are the way in.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: setup build test demo clean check-torch2

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

clean:
	rm -rf $(BUILD_DIR)
