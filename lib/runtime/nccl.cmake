# NCCL for several-GPU `run` / `bench` (README "Several GPUs"). Found beside the CUDA Toolkit, in
# MOE_NCCL_ROOT / $NCCL_HOME, or in a pip wheel (nvidia-nccl-cu*); without it the build still
# works and `--gpus` reports "built without NCCL". Sets MOE_HAVE_NCCL and moe_link_nccl(target).
option(MOE_ENABLE_NCCL "Build the several-GPU path when NCCL is found" ON)
set(MOE_NCCL_ROOT "" CACHE PATH "NCCL install prefix (include/nccl.h, lib/libnccl.so)")

set(MOE_HAVE_NCCL OFF)
if(MOE_HAVE_CUDA AND MOE_ENABLE_NCCL)
  file(GLOB _moe_nccl_wheels
       /usr/local/lib/python3*/dist-packages/nvidia/nccl /usr/local/lib/python3*/site-packages/nvidia/nccl
       /usr/lib/python3/dist-packages/nvidia/nccl /opt/conda/lib/python3*/site-packages/nvidia/nccl)
  set(_moe_nccl_hints ${MOE_NCCL_ROOT} $ENV{NCCL_HOME} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT}
      ${CUDAToolkit_TARGET_DIR} ${_moe_nccl_wheels})
  find_path(MOE_NCCL_INCLUDE nccl.h HINTS ${_moe_nccl_hints} ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  # Wheels ship only libnccl.so.2 (no unversioned link).
  find_library(MOE_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_moe_nccl_hints}
               ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
  if(NOT MOE_NCCL_INCLUDE OR NOT MOE_NCCL_LIBRARY)
    # A wheel in some other Python environment: ask the interpreter on PATH where it is.
    find_program(MOE_PYTHON3 python3)
    if(MOE_PYTHON3)
      execute_process(COMMAND ${MOE_PYTHON3} -c
                      "import nvidia.nccl as m; print(list(m.__path__)[0])"
                      OUTPUT_VARIABLE _moe_nccl_py OUTPUT_STRIP_TRAILING_WHITESPACE
                      ERROR_QUIET TIMEOUT 20)
      if(_moe_nccl_py)
        find_path(MOE_NCCL_INCLUDE nccl.h HINTS ${_moe_nccl_py} PATH_SUFFIXES include)
        find_library(MOE_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_moe_nccl_py}
                     PATH_SUFFIXES lib lib64)
      endif()
    endif()
  endif()
  if(MOE_NCCL_INCLUDE AND MOE_NCCL_LIBRARY)
    set(MOE_HAVE_NCCL ON)
  endif()
endif()
message(STATUS "moe-tool: NCCL ${MOE_HAVE_NCCL} ${MOE_NCCL_LIBRARY}")

if(MOE_HAVE_NCCL)
  list(APPEND MOE_RUNTIME_SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/nccl_comm.cpp
    ${CMAKE_CURRENT_LIST_DIR}/nccl_world.cpp
    ${CMAKE_CURRENT_LIST_DIR}/nccl_backend.cpp
  )
endif()

# Called by lib/CMakeLists.txt once moe_runtime exists.
function(moe_link_nccl target)
  if(MOE_HAVE_NCCL)
    target_compile_definitions(${target} PUBLIC MOE_HAVE_NCCL=1)
    target_include_directories(${target} PUBLIC ${MOE_NCCL_INCLUDE})
    target_link_libraries(${target} PUBLIC ${MOE_NCCL_LIBRARY})
  endif()
endfunction()
