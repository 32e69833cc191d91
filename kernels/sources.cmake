set(MOE_KERNEL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/routing.cu
  ${CMAKE_CURRENT_LIST_DIR}/align.cu
  ${CMAKE_CURRENT_LIST_DIR}/naive_moe.cu
  ${CMAKE_CURRENT_LIST_DIR}/gemm_mma.cu
  ${CMAKE_CURRENT_LIST_DIR}/gemm_wgmma.cu
  ${CMAKE_CURRENT_LIST_DIR}/gemm_launch.cu
)
