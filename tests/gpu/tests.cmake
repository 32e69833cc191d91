# GPU tests (label gpu): they exit 77 ("no CUDA device: ...") without a device, which CTest
# reports as skipped. The kernel tests need the CUDA toolkit to build; the backend test builds in
# every configuration (without CUDA it checks the "built without CUDA" error and skips the rest).
if(MOE_HAVE_CUDA)
  moe_add_test(NAME test_gpu_kernels
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_gpu_kernels.cpp ${CMAKE_CURRENT_LIST_DIR}/gpu_fixtures.cpp
    LABELS gpu
    LIBS moe_runtime)
endif()
moe_add_test(NAME test_cuda_backend
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cuda_backend.cpp
  LABELS gpu
  LIBS moe_runtime)
