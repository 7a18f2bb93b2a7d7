#include "core/io/timer_heap.hpp"

#include <ctime>
#include <stdexcept>
#include <vector>

namespace tf::core {
namespace {

// Grows `items` geometrically (plain reserve(n) would allocate exactly n, making repeated growth
// quadratic) so that it can hold `needed` elements.
template <typename Item>
void ensure_capacity(std::vector<Item>& items, size_t needed) {
  if (items.capacity() >= needed) return;
  size_t capacity = items.capacity() < 16 ? 16 : items.capacity() * 2;
  if (capacity < needed) capacity = needed;
  items.reserve(capacity);
}

}  // namespace

void TimerHeap::reserve(size_t count) {
  heap_.reserve(count);
  nodes_.reserve(count);
  free_nodes_.reserve(count);
}

TimerId TimerHeap::add(int64_t deadline_ns, uint64_t token) {
  // Grow every vector first, so that a failed allocation leaves the heap unchanged and freeing a
  // node later never allocates (free_nodes_ can always hold every node).
  ensure_capacity(heap_, heap_.size() + 1);
  uint32_t node;
  if (!free_nodes_.empty()) {
    node = free_nodes_.back();
    free_nodes_.pop_back();
  } else {
    // kNotInHeap is both a node-index sentinel and the low half of kNoTimer: never hand it out.
    if (nodes_.size() >= kNotInHeap) throw std::length_error("TimerHeap: too many timers");
    ensure_capacity(free_nodes_, nodes_.size() + 1);
    nodes_.emplace_back();
    node = static_cast<uint32_t>(nodes_.size() - 1);
  }
  nodes_[node].token = token;
  const size_t position = heap_.size();
  heap_.push_back(HeapEntry{deadline_ns, next_sequence_++, node});
  nodes_[node].heap_position = static_cast<uint32_t>(position);
  sift_up(position);
  return make_id(node, nodes_[node].generation);
}

uint32_t TimerHeap::live_node(TimerId id) const noexcept {
  const uint64_t node = id & 0xFFFFFFFFu;
  const uint32_t generation = static_cast<uint32_t>(id >> 32);
  if (node >= nodes_.size()) return kNotInHeap;
  const Node& candidate = nodes_[node];
  if (candidate.generation != generation || candidate.heap_position == kNotInHeap)
    return kNotInHeap;
  return static_cast<uint32_t>(node);
}

bool TimerHeap::contains(TimerId id) const noexcept {
  return live_node(id) != kNotInHeap;
}

bool TimerHeap::remove(TimerId id) noexcept {
  const uint32_t node = live_node(id);
  if (node == kNotInHeap) return false;
  erase_at(nodes_[node].heap_position);
  return true;
}

bool TimerHeap::reschedule(TimerId id, int64_t deadline_ns) noexcept {
  const uint32_t node = live_node(id);
  if (node == kNotInHeap) return false;
  const size_t position = nodes_[node].heap_position;
  heap_[position].deadline_ns = deadline_ns;
  heap_[position].sequence = next_sequence_++;
  // The new key is later or earlier: one of the two sifts moves it, the other is a no-op.
  sift_up(position);
  sift_down(nodes_[node].heap_position);
  return true;
}

std::optional<int64_t> TimerHeap::next_deadline() const noexcept {
  if (heap_.empty()) return std::nullopt;
  return heap_.front().deadline_ns;
}

std::optional<uint64_t> TimerHeap::pop_next_expired(int64_t now_ns) noexcept {
  if (heap_.empty() || heap_.front().deadline_ns > now_ns) return std::nullopt;
  const uint64_t token = nodes_[heap_.front().node].token;
  erase_at(0);
  return token;
}

size_t TimerHeap::pop_expired(int64_t now_ns, std::vector<uint64_t>& out) {
  size_t popped = 0;
  while (!heap_.empty() && heap_.front().deadline_ns <= now_ns) {
    out.push_back(nodes_[heap_.front().node].token);  // may throw: nothing popped yet for it
    erase_at(0);
    ++popped;
  }
  return popped;
}

void TimerHeap::place(size_t position, const HeapEntry& entry) noexcept {
  heap_[position] = entry;
  nodes_[entry.node].heap_position = static_cast<uint32_t>(position);
}

void TimerHeap::sift_up(size_t position) noexcept {
  const HeapEntry moving = heap_[position];
  while (position > 0) {
    const size_t parent = (position - 1) / kArity;
    if (!earlier(moving, heap_[parent])) break;
    place(position, heap_[parent]);
    position = parent;
  }
  place(position, moving);
}

void TimerHeap::sift_down(size_t position) noexcept {
  const HeapEntry moving = heap_[position];
  const size_t count = heap_.size();
  while (true) {
    const size_t first_child = position * kArity + 1;
    if (first_child >= count) break;
    const size_t last_child = first_child + kArity < count ? first_child + kArity : count;
    size_t best = first_child;
    for (size_t child = first_child + 1; child < last_child; ++child) {
      if (earlier(heap_[child], heap_[best])) best = child;
    }
    if (!earlier(heap_[best], moving)) break;
    place(position, heap_[best]);
    position = best;
  }
  place(position, moving);
}

void TimerHeap::erase_at(size_t position) noexcept {
  const uint32_t node = heap_[position].node;
  const HeapEntry moved = heap_.back();
  heap_.pop_back();
  if (position < heap_.size()) {
    // The former last entry fills the hole and moves up or down from there.
    place(position, moved);
    if (position > 0 && earlier(moved, heap_[(position - 1) / kArity])) {
      sift_up(position);
    } else {
      sift_down(position);
    }
  }
  nodes_[node].heap_position = kNotInHeap;
  ++nodes_[node].generation;
  free_nodes_.push_back(node);  // never allocates: capacity covers every node
}

int64_t monotonic_ns() noexcept {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

}  // namespace tf::core
