# GPU support of the trainer (docs/gpu.md), shared by the root build and the GPU benchmark's
# stand-alone build (bench/gpu/CMakeLists.txt). Expects Torch to be found. Sets:
#   VITSCALE_TORCH_CUDA  ON when the LibTorch found is a CUDA build (Python's torch on GPU
#                        machines); Debian's LibTorch 1.13 is CPU-only.
#   VITSCALE_WITH_NCCL   option: build the NCCL communicator. Default ON where nccl.h, libnccl
#                        and the CUDA runtime are found: the CUDA toolkit (/usr/local/cuda), or
#                        VITSCALE_NCCL_ROOT (e.g. Python's nvidia/nccl package directory).
#   vitscale_nccl        an interface target carrying NCCL and the CUDA runtime, when ON.
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(VITSCALE_TORCH_CUDA ON)
else()
  set(VITSCALE_TORCH_CUDA OFF)
endif()

find_package(CUDAToolkit QUIET)
set(VITSCALE_NCCL_ROOT "" CACHE PATH "Directory with include/nccl.h and lib/libnccl.so* (optional)")
find_path(VITSCALE_NCCL_INCLUDE_DIR nccl.h
  HINTS ${VITSCALE_NCCL_ROOT}/include ${CUDAToolkit_INCLUDE_DIRS})
find_library(VITSCALE_NCCL_LIBRARY NAMES nccl libnccl.so.2
  HINTS ${VITSCALE_NCCL_ROOT}/lib ${CUDAToolkit_LIBRARY_DIR})
if(CUDAToolkit_FOUND AND VITSCALE_NCCL_INCLUDE_DIR AND VITSCALE_NCCL_LIBRARY)
  set(_vitscale_nccl_default ON)
else()
  set(_vitscale_nccl_default OFF)
endif()
option(VITSCALE_WITH_NCCL "Build the NCCL communicator (GPU data parallelism)"
       ${_vitscale_nccl_default})
if(VITSCALE_WITH_NCCL)
  if(NOT (CUDAToolkit_FOUND AND VITSCALE_NCCL_INCLUDE_DIR AND VITSCALE_NCCL_LIBRARY))
    message(FATAL_ERROR "VITSCALE_WITH_NCCL needs the CUDA toolkit (found: ${CUDAToolkit_FOUND}), "
                        "nccl.h (${VITSCALE_NCCL_INCLUDE_DIR}) and libnccl "
                        "(${VITSCALE_NCCL_LIBRARY}); set VITSCALE_NCCL_ROOT or turn it OFF")
  endif()
  if(NOT TARGET vitscale_nccl)
    add_library(vitscale_nccl INTERFACE)
    target_include_directories(vitscale_nccl SYSTEM INTERFACE ${VITSCALE_NCCL_INCLUDE_DIR})
    target_link_libraries(vitscale_nccl INTERFACE ${VITSCALE_NCCL_LIBRARY} CUDA::cudart)
  endif()
endif()
message(STATUS "vitscale: LibTorch ${Torch_VERSION}, CUDA build: ${VITSCALE_TORCH_CUDA}, "
               "NCCL communicator: ${VITSCALE_WITH_NCCL}")
