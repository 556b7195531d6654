# Placeholder until the CUDA module lands: CUDA compiler found, nothing to build yet.
message(STATUS "fastnn: CUDA compiler ${CMAKE_CUDA_COMPILER} found")
