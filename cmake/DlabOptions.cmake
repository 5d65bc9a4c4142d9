# Common flags for every DiffusionLab target, as an INTERFACE target (no global flags).
add_library(dlab_options INTERFACE)
add_library(dlab::options ALIAS dlab_options)
target_compile_features(dlab_options INTERFACE cxx_std_17)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(dlab_options INTERFACE -Wall -Wextra -Wno-unused-parameter)
endif()
# Qt's `slots`/`signals`/`emit` keywords break LibTorch headers (STACK.md).
target_compile_definitions(dlab_options INTERFACE QT_NO_KEYWORDS)

# Every target compiles position-independent code (Qt 6 asks for it anyway), so that one
# precompiled LibTorch header serves them all: GCC refuses a PCH built with other -fpic settings.
set(CMAKE_POSITION_INDEPENDENT_CODE ON)

# Precompiled LibTorch headers. <torch/torch.h> costs ~23 s to precompile on 2 cores and ~10 s in
# every translation unit without it. dlab_core precompiles it once and every other target reuses
# that file (REUSE_FROM): the macros in which the targets differ (Qt's, the tests') are not used
# by LibTorch's headers, so GCC accepts it (-Winvalid-pch, which CMake adds, would say otherwise).
function(dlab_torch_pch target)
  if(NOT DLAB_USE_PCH)
    return()
  endif()
  if(target STREQUAL "dlab_core")
    target_precompile_headers(dlab_core PRIVATE <torch/torch.h>)
  else()
    target_precompile_headers(${target} REUSE_FROM dlab_core)
  endif()
endfunction()

# Unity builds for the libraries with many translation units: each TU with LibTorch costs seconds
# of parsing and template instantiation even with the PCH, and batches of a few files pay it once.
option(DLAB_UNITY_BUILD "Compile the libraries' sources in batches (unity build)" ON)
function(dlab_unity_build target)
  if(DLAB_UNITY_BUILD)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 6)
  endif()
endfunction()
