# cmake -DNVCC=... -DSRC=kernels/x.cu -DINC=kernels -DOUT=x.o -P check_ptxas.cmake
# Compiles one kernel source for sm_90a with ptxas's report (-Xptxas -v) and fails when ptxas
# serialized the wgmma of any kernel (C7515, "wgmma.mma_async instructions are serialized"): the
# kernels still give right answers then, only slower, so no GPU test can see it (a branch
# around the wgmma in a consumer loop did this to every 128-row TMA row once). Runs without a GPU.
foreach(var NVCC SRC INC OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_ptxas.cmake: -D${var}=... is missing")
  endif()
endforeach()
execute_process(
  COMMAND ${NVCC} -c ${SRC} -o ${OUT} -std=c++17 -O3 --expt-relaxed-constexpr
          -gencode=arch=compute_90a,code=sm_90a -I${INC} -Xptxas -v
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(REMOVE ${OUT})
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${SRC}: nvcc failed (${rc}):\n${err}")
endif()
string(REGEX MATCHALL "[^\n]*C7515[^\n]*" serialized "${out}\n${err}")
list(LENGTH serialized n)
if(n GREATER 0)
  list(GET serialized 0 first)
  message(FATAL_ERROR "${SRC}: ptxas serialized wgmma in ${n} kernel(s), first:\n${first}")
endif()
string(REGEX MATCHALL "Compiling entry function" entries "${err}")
list(LENGTH entries kernels)
if(kernels EQUAL 0)
  message(FATAL_ERROR "${SRC}: no ptxas report (no sm_90a kernels compiled?)")
endif()
message(STATUS "${SRC}: ${kernels} sm_90a kernels, no serialized wgmma")
