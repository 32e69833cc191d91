list(APPEND MOE_LIB_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/dense_decode.cpp
  ${CMAKE_CURRENT_LIST_DIR}/layer_weights.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_weights.cpp
  ${CMAKE_CURRENT_LIST_DIR}/shard_weights.cpp
  ${CMAKE_CURRENT_LIST_DIR}/routing.cpp
  ${CMAKE_CURRENT_LIST_DIR}/activation.cpp
  ${CMAKE_CURRENT_LIST_DIR}/expert_mlp.cpp
  ${CMAKE_CURRENT_LIST_DIR}/moe_reference.cpp
  ${CMAKE_CURRENT_LIST_DIR}/metrics.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tolerance.cpp
  ${CMAKE_CURRENT_LIST_DIR}/run_report.cpp
  ${CMAKE_CURRENT_LIST_DIR}/diff.cpp
)
