# libFuzzer targets (MOE_FUZZ=ON, clang): one per reader. The parser is rebuilt here with
# coverage instrumentation (-fsanitize=fuzzer-no-link) so the fuzzer sees inside it; the team's
# moe_lib stays as it is.
if(MOE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MOE_FUZZ=ON needs clang (CC=clang CXX=clang++)")
  endif()
  set(_moe_saved_lib_sources "${MOE_LIB_SOURCES}")
  set(MOE_LIB_SOURCES)
  include(${PROJECT_SOURCE_DIR}/lib/core/sources.cmake)
  include(${PROJECT_SOURCE_DIR}/lib/io/sources.cmake)
  add_library(moe_fuzz_io STATIC ${MOE_LIB_SOURCES})
  set(MOE_LIB_SOURCES "${_moe_saved_lib_sources}")
  target_include_directories(moe_fuzz_io PUBLIC ${PROJECT_SOURCE_DIR}/lib ${MOE_JSON_INCLUDE})
  target_compile_options(moe_fuzz_io PRIVATE -fsanitize=fuzzer-no-link)
  target_link_libraries(moe_fuzz_io PUBLIC Threads::Threads)

  add_executable(fuzz_safetensors_header ${CMAKE_CURRENT_LIST_DIR}/fuzz_safetensors_header.cpp)
  target_compile_options(fuzz_safetensors_header PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_safetensors_header PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_safetensors_header PRIVATE moe_fuzz_io)

  add_executable(fuzz_safetensors_seeds ${CMAKE_CURRENT_LIST_DIR}/make_seeds.cpp)
  target_link_libraries(fuzz_safetensors_seeds PRIVATE moe_lib)

  set(_moe_fuzz_dir ${CMAKE_CURRENT_BINARY_DIR}/fuzz/safetensors)
  add_test(NAME fuzz_safetensors_seeds COMMAND fuzz_safetensors_seeds ${_moe_fuzz_dir})
  set_tests_properties(fuzz_safetensors_seeds PROPERTIES LABELS fuzz
                       FIXTURES_SETUP fuzz_safetensors_corpus)
  # ~20 s of fuzzing; new inputs go to corpus/ (kept between runs), crashes to crash-* there.
  add_test(NAME fuzz_safetensors_smoke
           COMMAND fuzz_safetensors_header -max_total_time=20 -timeout=10 -rss_limit_mb=2048
                   -max_len=4096 -dict=${CMAKE_CURRENT_LIST_DIR}/safetensors.dict
                   -artifact_prefix=${_moe_fuzz_dir}/
                   ${_moe_fuzz_dir}/corpus ${_moe_fuzz_dir}/seeds
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(fuzz_safetensors_smoke PROPERTIES LABELS fuzz TIMEOUT 120
                       FIXTURES_REQUIRED fuzz_safetensors_corpus)
endif()
