# fastnn._cuda, included by the top-level CMakeLists.txt once a CUDA compiler was found.
#
# The kernels (*.cu) are compiled by nvcc into a static library; the pybind11 bindings
# (bind_cuda.cpp) by the host compiler alone, so pybind11's headers and flags never meet nvcc.
# The CUDA runtime is linked statically: the module imports on machines without a driver (and
# then reports no device), and wheels do not depend on a toolkit being installed.

# A short architecture list keeps the build quick: SASS for Ampere and Hopper, plus their PTX,
# which newer GPUs compile at load time. -DCMAKE_CUDA_ARCHITECTURES=... or CUDAARCHS overrides it.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES "80;90")
endif()
enable_language(CUDA)
find_package(CUDAToolkit)
if(NOT CUDAToolkit_FOUND)
  # A compiler without its runtime library: AUTO builds the CPU module alone, ON is an error.
  if(FASTNN_CUDA_MODE STREQUAL "ON")
    message(FATAL_ERROR "FASTNN_CUDA=ON but the CUDA toolkit (cudart) was not found")
  endif()
  message(WARNING "fastnn: nvcc found but not the CUDA toolkit; building without fastnn._cuda")
  return()
endif()
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

file(GLOB FASTNN_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/csrc/cuda/*.cu)
add_library(fastnn_cuda_kernels STATIC ${FASTNN_CUDA_SOURCES})
target_include_directories(fastnn_cuda_kernels PRIVATE ${CMAKE_SOURCE_DIR}/csrc)
set_target_properties(fastnn_cuda_kernels PROPERTIES
                      POSITION_INDEPENDENT_CODE ON
                      CUDA_RUNTIME_LIBRARY Static
                      CUDA_VISIBILITY_PRESET hidden)
if(NOT MSVC)
  # Warnings are errors in CUDA code, both nvcc's own and the host compiler's on the host side.
  target_compile_options(fastnn_cuda_kernels PRIVATE
                         $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings>
                         $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Werror>)
endif()

pybind11_add_module(_cuda MODULE ${CMAKE_SOURCE_DIR}/csrc/cuda/bind_cuda.cpp)
target_include_directories(_cuda PRIVATE ${CMAKE_SOURCE_DIR}/csrc)
target_link_libraries(_cuda PRIVATE fastnn_cuda_kernels CUDA::cudart_static)
if(NOT MSVC)
  target_compile_options(_cuda PRIVATE -Wall -Wextra -Werror)
endif()

if(FASTNN_INPLACE)
  set_target_properties(_cuda PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_SOURCE_DIR}/python/fastnn)
endif()
install(TARGETS _cuda LIBRARY DESTINATION fastnn)
message(STATUS "fastnn: building fastnn._cuda with ${CMAKE_CUDA_COMPILER} "
               "(architectures ${CMAKE_CUDA_ARCHITECTURES})")
