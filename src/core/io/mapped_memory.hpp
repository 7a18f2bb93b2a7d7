// MappedMemory: an anonymous private memory mapping (page aligned, zero filled), the one owner of
// it: move-only, unmapped on destruction. Backends keep their provided buffers in one.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <system_error>
#include <utility>

namespace tf::core {

class MappedMemory {
 public:
  MappedMemory() noexcept = default;
  // Maps `size` bytes (nothing for 0). Throws std::system_error when mmap fails.
  explicit MappedMemory(size_t size) : size_(size) {
    if (size_ == 0) return;
    void* address =
        ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (address == MAP_FAILED) {
      throw std::system_error(errno, std::generic_category(), "mmap of receive buffers failed");
    }
    data_ = static_cast<std::byte*>(address);
  }
  MappedMemory(MappedMemory&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MappedMemory& operator=(MappedMemory&& other) noexcept {
    if (this != &other) {
      unmap();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  MappedMemory(const MappedMemory&) = delete;
  MappedMemory& operator=(const MappedMemory&) = delete;
  ~MappedMemory() { unmap(); }

  std::byte* data() const noexcept { return data_; }

 private:
  void unmap() noexcept {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
  }

  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tf::core
