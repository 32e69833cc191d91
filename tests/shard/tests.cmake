moe_add_test(NAME test_xxhash64 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_xxhash64.cpp LABELS cpu)
moe_add_test(NAME test_convert
             SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_convert.cpp ${CMAKE_CURRENT_LIST_DIR}/shard_fixtures.cpp
             LABELS cpu)
moe_add_test(NAME test_convert_cli SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_convert_cli.cpp LABELS cpu)
# Not a test: the checkpoint generator of tests/bench/bench_convert.sh.
add_executable(make_synthetic_checkpoint ${CMAKE_CURRENT_LIST_DIR}/make_synthetic_checkpoint.cpp)
target_link_libraries(make_synthetic_checkpoint PRIVATE moe_lib)
