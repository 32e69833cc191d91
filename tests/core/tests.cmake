moe_add_test(NAME test_core SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_dtype.cpp)
