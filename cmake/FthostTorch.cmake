# Finds LibTorch (from the PyPI torch wheel: scripts/setup.sh passes its
# cmake_prefix_path) and decides whether CUDA code is compiled: only when the LibTorch
# has CUDA and an nvcc of the same CUDA major is present. Otherwise the build is CPU-only.

# LibTorch's CUDA config wants nvcc; find it quietly and let it fail soft.
if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
# LibTorch turns this list into nvcc -gencode flags; its own default includes
# architectures CUDA 13 no longer supports. Ampere and Hopper (A100, H100/H200).
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
find_package(Torch REQUIRED)

option(FTHOST_ENABLE_CUDA "Compile CUDA code when LibTorch and nvcc allow it" ON)
set(FTHOST_WITH_CUDA OFF)
set(FTHOST_CPU_ONLY_REASON "LibTorch was built without CUDA")
if(NOT FTHOST_ENABLE_CUDA)
  set(FTHOST_CPU_ONLY_REASON "FTHOST_ENABLE_CUDA=OFF")
elseif(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    execute_process(COMMAND ${CMAKE_CUDA_COMPILER} --version OUTPUT_VARIABLE _nvcc_out)
    string(REGEX MATCH "release ([0-9]+)\\.([0-9]+)" _m "${_nvcc_out}")
    set(_nvcc_major ${CMAKE_MATCH_1})
    # Torch's CUDA version as LibTorch's config reports it.
    set(_torch_cuda "${CUDA_VERSION}")
    if(NOT _torch_cuda AND CUDAToolkit_VERSION)
      set(_torch_cuda "${CUDAToolkit_VERSION}")
    endif()
    string(REGEX MATCH "^([0-9]+)" _torch_cuda_major "${_torch_cuda}")
    if(_nvcc_major AND _nvcc_major STREQUAL _torch_cuda_major)
      set(FTHOST_WITH_CUDA ON)
    else()
      set(FTHOST_CPU_ONLY_REASON "nvcc CUDA ${_nvcc_major} differs from LibTorch's CUDA ${_torch_cuda}")
    endif()
  else()
    set(FTHOST_CPU_ONLY_REASON "no nvcc found")
  endif()
endif()

if(FTHOST_WITH_CUDA)
  enable_language(CUDA)
  if(NOT CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "52")
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  message(STATUS "fthost: CUDA build (LibTorch ${Torch_VERSION}, CUDA ${_torch_cuda}); kernels/ CUDA code is compiled")
else()
  message(STATUS "fthost: CPU-only build: ${FTHOST_CPU_ONLY_REASON}")
endif()

if(FTHOST_WITH_CUDA)
  set(FTHOST_CUDA_VERSION "${_torch_cuda}")
else()
  set(FTHOST_CUDA_VERSION "")
endif()
set(FTHOST_WITH_CUDA ${FTHOST_WITH_CUDA} CACHE INTERNAL "CUDA code is compiled")
set(FTHOST_CPU_ONLY_REASON "${FTHOST_CPU_ONLY_REASON}" CACHE INTERNAL "why the build is CPU-only")

# LibTorch's major.minor, compared with each plugin's at load time.
string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" FTHOST_TORCH_MAJOR_MINOR "${Torch_VERSION}")
# The folder of LibTorch's libraries (recorded by `fthost --version` and the installed
# launcher, which looks there first).
get_filename_component(FTHOST_TORCH_LIB_DIR "${TORCH_INSTALL_PREFIX}/lib" ABSOLUTE)
