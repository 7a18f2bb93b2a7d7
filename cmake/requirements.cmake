# What a build of theframework needs, checked before any target is defined, so that a machine
# lacking one of them gets ONE message naming what is missing and how to get it, instead of an error
# from deep inside CMake or the compiler. Included by CMakeLists.txt right after
# project(... LANGUAGES NONE); it enables CXX itself and leaves behind:
#   URING_INCLUDE_DIR   the directory holding liburing.h
#   URING_LIBRARY       liburing.a when it exists (Debian/Ubuntu's liburing-dev ships it, and the
#                       wheels are built so: nothing to install at run time), else the shared one
#   ZLIB_INCLUDE_DIR    the directory holding zlib.h
#   ZLIB_LIBRARY        the shared zlib (permessage-deflate; Debian's libz.a is not
#                       position-independent, and libz.so.1 is on the manylinux policy's list)
#
# The requirements:
#   - Linux: the engine is io_uring with an epoll fallback, both Linux interfaces.
#   - A C++20 compiler: the sources use std::span, designated initializers and
#     std::string_view::starts_with (GCC 10 or later, Clang 12 or later with libstdc++ 10 or later).
#   - liburing >= 2.3: 2.3 is the first release with io_uring_submit_and_get_events() and
#     io_uring_get_events(), with which the io_uring backend submits and flushes deferred
#     completions (IORING_SETUP_DEFER_TASKRUN) without blocking.
#   - zlib's headers: WebSocket permessage-deflate (RFC 7692).

set(TF_LIBURING_MINIMUM "2.3")
set(TF_LIBURING_PACKAGES
    "Debian/Ubuntu: apt-get install liburing-dev; Fedora: dnf install liburing-devel; or build \
liburing ${TF_LIBURING_MINIMUM}+ from source and pass -DCMAKE_PREFIX_PATH=<its prefix>")

# Stops the configuration with the one message for a missing requirement.
macro(tf_requirement_missing text)
  message(FATAL_ERROR "theframework cannot be built here: ${text}")
endmacro()

if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  tf_requirement_missing(
    "it runs on Linux only (its engine is io_uring with an epoll fallback), and this build \
targets ${CMAKE_SYSTEM_NAME}.")
endif()

include(CheckLanguage)
check_language(CXX)
if(NOT CMAKE_CXX_COMPILER)
  tf_requirement_missing(
    "no C++ compiler was found; it needs one that supports C++20 (GCC 10 or later, Clang 12 or \
later). Debian/Ubuntu: apt-get install g++; Fedora: dnf install gcc-c++; or set CXX to one.")
endif()
enable_language(CXX)

# The C++20 features the sources rely on, compiled with the flag CMake would use for C++20.
include(CheckCXXSourceCompiles)
unset(TF_HAVE_CXX20 CACHE)
set(CMAKE_REQUIRED_QUIET ON)
set(CMAKE_REQUIRED_FLAGS "${CMAKE_CXX20_STANDARD_COMPILE_OPTION}")
check_cxx_source_compiles(
  [[
#include <span>
#include <string_view>
struct Point { int x; int y; };
template <typename T> concept Sized = requires(T value) { value.size(); };
static_assert(Sized<std::span<const int>>);
int main() {
  constexpr Point point{.x = 1, .y = 2};
  int values[] = {point.x, point.y};
  std::span<const int> view(values);
  return std::string_view("theframework").starts_with("the") ? static_cast<int>(view.size()) - 2 : 1;
}
]]
  TF_HAVE_CXX20)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT CMAKE_CXX20_STANDARD_COMPILE_OPTION OR NOT TF_HAVE_CXX20)
  tf_requirement_missing(
    "the C++ compiler ${CMAKE_CXX_COMPILER} (${CMAKE_CXX_COMPILER_ID} \
${CMAKE_CXX_COMPILER_VERSION}) cannot compile C++20 (std::span, designated initializers, \
concepts, string_view::starts_with); it needs GCC 10 or later or Clang 12 or later (set CXX \
to one).")
endif()

# liburing: the static library first (linked into the module), else the shared one.
find_path(URING_INCLUDE_DIR liburing.h)
find_library(URING_LIBRARY NAMES liburing.a uring)
if(NOT URING_INCLUDE_DIR OR NOT URING_LIBRARY)
  if(URING_LIBRARY)
    set(TF_URING_MISSING "its header liburing.h was not found (the library is ${URING_LIBRARY})")
  elseif(URING_INCLUDE_DIR)
    set(TF_URING_MISSING "its library was not found (the header is ${URING_INCLUDE_DIR}/liburing.h)")
  else()
    set(TF_URING_MISSING "neither its header liburing.h nor its library was found")
  endif()
  tf_requirement_missing(
    "it needs liburing >= ${TF_LIBURING_MINIMUM}, and ${TF_URING_MISSING}. ${TF_LIBURING_PACKAGES}.")
endif()

unset(TF_HAVE_LIBURING_MINIMUM CACHE)
set(CMAKE_REQUIRED_INCLUDES "${URING_INCLUDE_DIR}")
set(CMAKE_REQUIRED_LIBRARIES "${URING_LIBRARY}")
check_cxx_source_compiles(
  [[
#include <liburing.h>
int main() {
  struct io_uring ring {};
  return io_uring_submit_and_get_events(&ring) + io_uring_get_events(&ring);
}
]]
  TF_HAVE_LIBURING_MINIMUM)
unset(CMAKE_REQUIRED_INCLUDES)
unset(CMAKE_REQUIRED_LIBRARIES)
unset(CMAKE_REQUIRED_QUIET)
if(NOT TF_HAVE_LIBURING_MINIMUM)
  tf_requirement_missing(
    "the liburing found (${URING_INCLUDE_DIR}/liburing.h, ${URING_LIBRARY}) is older than \
${TF_LIBURING_MINIMUM}, the first release with io_uring_submit_and_get_events() and \
io_uring_get_events(). ${TF_LIBURING_PACKAGES}.")
endif()

find_path(ZLIB_INCLUDE_DIR zlib.h)
find_library(ZLIB_LIBRARY NAMES z)
if(NOT ZLIB_INCLUDE_DIR OR NOT ZLIB_LIBRARY)
  tf_requirement_missing(
    "it needs zlib's header zlib.h and its library (WebSocket permessage-deflate), and they were \
not found. Debian/Ubuntu: apt-get install zlib1g-dev; Fedora: dnf install zlib-devel.")
endif()
message(STATUS "theframework: liburing ${URING_LIBRARY}, C++ compiler ${CMAKE_CXX_COMPILER_ID} \
${CMAKE_CXX_COMPILER_VERSION}")
