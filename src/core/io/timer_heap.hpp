// TimerHeap: the hub's timers. An indexed 4-ary min-heap keyed by (deadline, insertion order), with
// O(log n) add, remove and reschedule, and handles that stay safe after the timer is gone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace tf::core {

// Handle of one timer: low 32 bits are a node index, high 32 bits that node's generation. The
// generation changes whenever the node is freed (fired or removed), so a handle kept after its
// timer is gone is detected as stale, even once the node carries another timer. (A stale handle
// could only alias again after 2^32 reuses of the same node.)
using TimerId = uint64_t;
// Never returned by add(); a convenient "no timer" value for callers. remove(kNoTimer) is false.
inline constexpr TimerId kNoTimer = UINT64_MAX;

// Single-threaded. Nodes are recycled through a free list, so add() allocates only when the number
// of live timers exceeds every previous peak (or never, after reserve()).
class TimerHeap {
 public:
  TimerHeap() = default;

  // Preallocates room for `count` live timers.
  void reserve(size_t count);

  // Adds a timer firing at deadline_ns (CLOCK_MONOTONIC nanoseconds; any value, past deadlines
  // fire at the next pop) carrying `token`. Returns its handle.
  TimerId add(int64_t deadline_ns, uint64_t token);

  // Removes a pending timer. Returns false, changing nothing, when `id` is stale (the timer already
  // fired or was removed), or was never returned by this heap.
  bool remove(TimerId id) noexcept;

  // Moves a pending timer to a new deadline, keeping its handle and token; among equal deadlines
  // it then counts as inserted now. Returns false, changing nothing, for a stale or unknown id.
  bool reschedule(TimerId id, int64_t deadline_ns) noexcept;

  // True while `id` names a pending timer.
  bool contains(TimerId id) const noexcept;

  // Earliest pending deadline, or nullopt when empty.
  std::optional<int64_t> next_deadline() const noexcept;

  // Pops every timer with deadline <= now_ns in deadline order (ties: insertion order), appending
  // their tokens to `out`. Returns how many were popped. Their handles become stale at once.
  size_t pop_expired(int64_t now_ns, std::vector<uint64_t>& out);

  // Pops the earliest timer if its deadline is <= now_ns and returns its token; nullopt otherwise.
  // For callers whose timer handling may remove other due timers before they are delivered.
  std::optional<uint64_t> pop_next_expired(int64_t now_ns) noexcept;

  // Number of pending timers.
  size_t size() const noexcept { return heap_.size(); }
  bool empty() const noexcept { return heap_.empty(); }

 private:
  static constexpr uint32_t kNotInHeap = UINT32_MAX;
  static constexpr size_t kArity = 4;

  // One heap slot: the ordering key is kept here so that sifting never touches the nodes.
  struct HeapEntry {
    int64_t deadline_ns;
    uint64_t sequence;  // insertion order, breaks deadline ties
    uint32_t node;
  };
  struct Node {
    uint64_t token = 0;
    uint32_t generation = 0;
    uint32_t heap_position = kNotInHeap;  // kNotInHeap while free
  };

  static bool earlier(const HeapEntry& a, const HeapEntry& b) noexcept {
    return a.deadline_ns < b.deadline_ns ||
           (a.deadline_ns == b.deadline_ns && a.sequence < b.sequence);
  }
  static TimerId make_id(uint32_t node, uint32_t generation) noexcept {
    return (static_cast<uint64_t>(generation) << 32) | node;
  }

  // The node index of `id` if it names a pending timer, kNotInHeap otherwise.
  uint32_t live_node(TimerId id) const noexcept;
  void place(size_t position, const HeapEntry& entry) noexcept;
  void sift_up(size_t position) noexcept;
  void sift_down(size_t position) noexcept;
  // Removes the entry at heap position `position` and frees its node.
  void erase_at(size_t position) noexcept;

  std::vector<HeapEntry> heap_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> free_nodes_;
  uint64_t next_sequence_ = 0;
};

// CLOCK_MONOTONIC now, in nanoseconds.
int64_t monotonic_ns() noexcept;

}  // namespace tf::core
