set(MOE_RUNTIME_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/device_info.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cpu_backend.cpp
)
# The CUDA backend and bench: both files compile in every build (without CUDA they report
# "moe-tool was built without CUDA"); the gpu_* helpers only with CUDA.
list(APPEND MOE_RUNTIME_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cuda_backend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/gpu_bench.cpp
)
if(MOE_HAVE_CUDA)
  list(APPEND MOE_RUNTIME_SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/gpu_buffer.cpp
    ${CMAKE_CURRENT_LIST_DIR}/gpu_loader.cpp
    ${CMAKE_CURRENT_LIST_DIR}/gpu_moe.cpp
  )
endif()
# Several GPUs through NCCL: the world plan, the TCP bootstrap and the bench entry build
# everywhere; the NCCL parts only where nccl.cmake finds NCCL.
list(APPEND MOE_RUNTIME_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/multi_gpu.cpp
  ${CMAKE_CURRENT_LIST_DIR}/nccl_bootstrap.cpp
  ${CMAKE_CURRENT_LIST_DIR}/nccl_bench.cpp
)
include(${CMAKE_CURRENT_LIST_DIR}/nccl.cmake)
