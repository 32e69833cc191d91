moe_add_test(NAME test_io_safetensors
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_safetensors.cpp ${CMAKE_CURRENT_LIST_DIR}/io_fixtures.cpp
  LABELS cpu)
moe_add_test(NAME test_io_checkpoint
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_checkpoint.cpp ${CMAKE_CURRENT_LIST_DIR}/io_fixtures.cpp
  LABELS cpu)
