moe_add_test(NAME test_plan SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_plan.cpp LABELS cpu)
