# GPU tests (label gpu): they exit 77 ("no CUDA device: ...") without a device, which CTest
# reports as skipped. The kernel tests need the CUDA toolkit to build; the backend test builds in
# every configuration (without CUDA it checks the "built without CUDA" error and skips the rest).
if(MOE_HAVE_CUDA)
  moe_add_test(NAME test_gpu_kernels
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_gpu_kernels.cpp ${CMAKE_CURRENT_LIST_DIR}/gpu_fixtures.cpp
    LABELS gpu
    LIBS moe_runtime)
  # The tile choice is host code of the kernels library: it runs without a GPU (label cpu).
  moe_add_test(NAME test_tile_choice
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_tile_choice.cpp
    LIBS moe_runtime)
  # ptxas must not serialize the wgmma of the Hopper rows (check_ptxas.cmake); a compile of each
  # wgmma source, no GPU needed.
  foreach(src gemm_wgmma gemm_tma)
    add_test(NAME ptxas_wgmma_${src}
      COMMAND ${CMAKE_COMMAND} -DNVCC=${CMAKE_CUDA_COMPILER}
              -DSRC=${CMAKE_SOURCE_DIR}/kernels/${src}.cu -DINC=${CMAKE_SOURCE_DIR}/kernels
              -DOUT=${CMAKE_CURRENT_BINARY_DIR}/ptxas_${src}.o
              -P ${CMAKE_CURRENT_LIST_DIR}/check_ptxas.cmake)
    set_tests_properties(ptxas_wgmma_${src} PROPERTIES LABELS cpu TIMEOUT 900)
  endforeach()
endif()
moe_add_test(NAME test_cuda_backend
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cuda_backend.cpp
  LABELS gpu
  LIBS moe_runtime)
# Several GPUs through NCCL. The whole suite is the gpu-labelled test (it exits 77 at its first
# [gpu] case without a GPU or NCCL); its CPU cases (assignment, launcher variables, the TCP
# bootstrap over localhost, CLI errors) also run alone under the cpu label.
moe_add_test(NAME test_multi_gpu
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_multi_gpu.cpp
  LABELS gpu
  LIBS moe_runtime)
add_dependencies(test_multi_gpu moe-tool)
add_test(NAME test_multi_gpu_cpu COMMAND test_multi_gpu "~[gpu]")
set_tests_properties(test_multi_gpu_cpu PROPERTIES LABELS cpu
                     ENVIRONMENT "MOE_TOOL=$<TARGET_FILE:moe-tool>")
