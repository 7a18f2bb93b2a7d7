// GuardedBuffer: places test input right before an unreadable page, so that any read past the
// input faults (picohttpparser's technique). Shared by the parser test suites of tests/cpp/http.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string_view>

namespace tf::http {

// Two pages, the second PROT_NONE; place() copies data to end at the first page's last byte.
class GuardedBuffer {
 public:
  GuardedBuffer() {
    page_size_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* memory =
        mmap(nullptr, page_size_ * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return;
    base_ = static_cast<char*>(memory);
    if (mprotect(base_ + page_size_, page_size_, PROT_NONE) != 0) {
      munmap(base_, page_size_ * 2);
      base_ = nullptr;
    }
  }
  ~GuardedBuffer() {
    if (base_ != nullptr) munmap(base_, page_size_ * 2);
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  bool valid() const { return base_ != nullptr; }
  size_t capacity() const { return page_size_; }

  // Copies `data` so that its last byte is the last readable byte.
  std::string_view place(std::string_view data) {
    char* start = base_ + page_size_ - data.size();
    std::memcpy(start, data.data(), data.size());
    return {start, data.size()};
  }

 private:
  size_t page_size_ = 0;
  char* base_ = nullptr;
};

}  // namespace tf::http
