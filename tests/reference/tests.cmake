moe_add_test(NAME test_reference
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_routing.cpp
          ${CMAKE_CURRENT_LIST_DIR}/test_moe_reference.cpp
          ${CMAKE_CURRENT_LIST_DIR}/test_metrics.cpp)
moe_add_test(NAME test_run
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_run.cpp
  LIBS moe_runtime)
