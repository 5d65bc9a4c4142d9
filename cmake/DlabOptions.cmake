# Common flags for every DiffusionLab target, as an INTERFACE target (no global flags).
add_library(dlab_options INTERFACE)
add_library(dlab::options ALIAS dlab_options)
target_compile_features(dlab_options INTERFACE cxx_std_17)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(dlab_options INTERFACE -Wall -Wextra -Wno-unused-parameter)
endif()
# Qt's `slots`/`signals`/`emit` keywords break LibTorch headers (STACK.md).
target_compile_definitions(dlab_options INTERFACE QT_NO_KEYWORDS)

# Precompile the LibTorch headers for a target (each plain torch TU costs ~10 s otherwise).
function(dlab_torch_pch target)
  if(DLAB_USE_PCH)
    target_precompile_headers(${target} PRIVATE <torch/torch.h>)
  endif()
endfunction()
