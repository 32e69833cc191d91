# One cmd_<name>.cpp per subcommand.
set(MOE_CMD_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cmd_convert.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cmd_run.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cmd_diff.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cmd_make_example.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cmd_inspect.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cmd_validate.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cmd_bench.cpp
)
