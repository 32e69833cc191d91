list(APPEND MOE_LIB_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/xxhash64.cpp
  ${CMAKE_CURRENT_LIST_DIR}/rank_builder.cpp
  ${CMAKE_CURRENT_LIST_DIR}/source_reader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/shard_writer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/manifest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/shard_set.cpp
  ${CMAKE_CURRENT_LIST_DIR}/shard_check.cpp
  ${CMAKE_CURRENT_LIST_DIR}/convert.cpp
)
