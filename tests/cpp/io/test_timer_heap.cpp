#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/io/timer_heap.hpp"

namespace tf::core {
namespace {

TEST(TimerHeap, EmptyHeap) {
  TimerHeap heap;
  EXPECT_EQ(heap.size(), 0u);
  EXPECT_TRUE(heap.empty());
  EXPECT_FALSE(heap.next_deadline().has_value());
  std::vector<uint64_t> out;
  EXPECT_EQ(heap.pop_expired(INT64_MAX, out), 0u);
  EXPECT_TRUE(out.empty());
  EXPECT_FALSE(heap.pop_next_expired(INT64_MAX).has_value());
  EXPECT_FALSE(heap.remove(kNoTimer));
  EXPECT_FALSE(heap.remove(0));
  EXPECT_FALSE(heap.reschedule(0, 5));
  EXPECT_FALSE(heap.contains(0));
}

TEST(TimerHeap, RandomDeadlinesPopInOrder) {
  TimerHeap heap;
  std::mt19937_64 random(12345);
  std::uniform_int_distribution<int64_t> deadlines(-1'000'000, 1'000'000'000);
  std::vector<std::pair<int64_t, uint64_t>> expected;
  std::vector<int64_t> deadline_of_token;
  for (uint64_t token = 0; token < 10'000; ++token) {
    const int64_t deadline = deadlines(random);
    heap.add(deadline, token);
    expected.emplace_back(deadline, token);
    deadline_of_token.push_back(deadline);
  }
  EXPECT_EQ(heap.size(), 10'000u);
  // Tokens are in insertion order, so sorting the pairs gives deadline order with ties in insertion
  // order.
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(heap.next_deadline(), expected.front().first);

  // Pop in several steps to exercise partial expiry.
  std::vector<uint64_t> popped;
  const int64_t middle = expected[expected.size() / 2].first;
  const size_t first_batch = heap.pop_expired(middle, popped);
  for (uint64_t token : popped) ASSERT_LE(deadline_of_token[token], middle);
  EXPECT_EQ(first_batch, popped.size());
  ASSERT_TRUE(heap.next_deadline().has_value());
  EXPECT_GT(*heap.next_deadline(), middle);
  EXPECT_EQ(heap.pop_expired(INT64_MAX, popped), 10'000u - first_batch);
  ASSERT_EQ(popped.size(), expected.size());
  for (size_t index = 0; index < expected.size(); ++index) {
    ASSERT_EQ(popped[index], expected[index].second) << index;
  }
  EXPECT_EQ(heap.size(), 0u);
  EXPECT_FALSE(heap.next_deadline().has_value());
}

TEST(TimerHeap, TiesPopInInsertionOrder) {
  TimerHeap heap;
  for (uint64_t token = 0; token < 100; ++token) heap.add(token % 2 == 0 ? 50 : 10, token);
  std::vector<uint64_t> out;
  EXPECT_EQ(heap.pop_expired(49, out), 50u);
  EXPECT_EQ(heap.pop_expired(50, out), 50u);
  ASSERT_EQ(out.size(), 100u);
  for (size_t index = 0; index < 50; ++index) {
    EXPECT_EQ(out[index], 2 * index + 1);
    EXPECT_EQ(out[50 + index], 2 * index);
  }
}

TEST(TimerHeap, DeadlineEqualToNowFiresLaterDoesNot) {
  TimerHeap heap;
  heap.add(100, 1);
  heap.add(101, 2);
  std::vector<uint64_t> out;
  EXPECT_EQ(heap.pop_expired(99, out), 0u);
  EXPECT_EQ(heap.pop_expired(100, out), 1u);
  EXPECT_EQ(out, std::vector<uint64_t>{1});
  EXPECT_EQ(heap.next_deadline(), 101);
  EXPECT_FALSE(heap.pop_next_expired(100).has_value());
  EXPECT_EQ(heap.pop_next_expired(101), 2u);
  EXPECT_TRUE(heap.empty());
}

TEST(TimerHeap, StaleIdsAreRejected) {
  TimerHeap heap;
  const TimerId fired = heap.add(10, 1);
  const TimerId removed = heap.add(20, 2);
  const TimerId pending = heap.add(30, 3);
  EXPECT_TRUE(heap.remove(removed));
  EXPECT_FALSE(heap.remove(removed));  // twice
  std::vector<uint64_t> out;
  EXPECT_EQ(heap.pop_expired(25, out), 1u);
  EXPECT_EQ(out, std::vector<uint64_t>{1});
  EXPECT_FALSE(heap.remove(fired));  // after it fired
  EXPECT_FALSE(heap.reschedule(fired, 5));
  EXPECT_FALSE(heap.contains(fired));
  EXPECT_TRUE(heap.contains(pending));
  EXPECT_EQ(heap.size(), 1u);
  // An index never handed out, and a generation never reached.
  EXPECT_FALSE(heap.remove(pending + 1000));
  EXPECT_FALSE(heap.remove(pending + (uint64_t{5} << 32)));
  EXPECT_FALSE(heap.remove(kNoTimer));
  EXPECT_EQ(heap.size(), 1u);
  EXPECT_TRUE(heap.remove(pending));
  EXPECT_TRUE(heap.empty());
}

TEST(TimerHeap, ReusedNodesDoNotHonourOldIds) {
  TimerHeap heap;
  const TimerId old_id = heap.add(10, 1);
  EXPECT_TRUE(heap.remove(old_id));
  const TimerId new_id = heap.add(20, 2);  // reuses the freed node
  EXPECT_NE(new_id, old_id);
  EXPECT_EQ(new_id & 0xFFFFFFFFu, old_id & 0xFFFFFFFFu);
  EXPECT_FALSE(heap.remove(old_id));  // must not remove the new timer
  EXPECT_TRUE(heap.contains(new_id));
  EXPECT_EQ(heap.size(), 1u);
  std::vector<uint64_t> out;
  EXPECT_EQ(heap.pop_expired(20, out), 1u);
  EXPECT_EQ(out, std::vector<uint64_t>{2});
  EXPECT_FALSE(heap.remove(new_id));
  // Many generations of the same node: every earlier id stays dead.
  std::vector<TimerId> history{old_id, new_id};
  for (int round = 0; round < 1000; ++round) {
    const TimerId id = heap.add(round, static_cast<uint64_t>(round));
    for (TimerId earlier : history) ASSERT_FALSE(heap.contains(earlier));
    history.push_back(id);
    ASSERT_TRUE(heap.remove(id));
  }
}

TEST(TimerHeap, RescheduleMovesBothWays) {
  TimerHeap heap;
  std::vector<TimerId> ids;
  for (uint64_t token = 0; token < 20; ++token)
    ids.push_back(heap.add(100 + int64_t(token), token));
  EXPECT_TRUE(heap.reschedule(ids[10], 1));    // earlier
  EXPECT_TRUE(heap.reschedule(ids[0], 1000));  // later
  EXPECT_TRUE(heap.reschedule(ids[5], 105));   // same deadline: now after any other 105
  EXPECT_TRUE(heap.contains(ids[10]));
  std::vector<uint64_t> out;
  heap.pop_expired(INT64_MAX, out);
  std::vector<uint64_t> expected{10, 1,  2,  3,  4,  5,  6,  7,  8,  9,
                                 11, 12, 13, 14, 15, 16, 17, 18, 19, 0};
  EXPECT_EQ(out, expected);
}

TEST(TimerHeap, NoAllocationInSteadyState) {
  TimerHeap heap;
  std::vector<TimerId> ids;
  for (int index = 0; index < 64; ++index) ids.push_back(heap.add(index, 0));
  for (TimerId id : ids) ASSERT_TRUE(heap.remove(id));
  // Same peak again: every node comes from the free list; ids keep their node indices.
  std::vector<TimerId> again;
  for (int index = 0; index < 64; ++index) again.push_back(heap.add(index, 0));
  std::vector<uint64_t> old_nodes, new_nodes;
  for (TimerId id : ids) old_nodes.push_back(id & 0xFFFFFFFFu);
  for (TimerId id : again) new_nodes.push_back(id & 0xFFFFFFFFu);
  std::sort(old_nodes.begin(), old_nodes.end());
  std::sort(new_nodes.begin(), new_nodes.end());
  EXPECT_EQ(old_nodes, new_nodes);
}

// Randomised against a model: std::multimap keyed by (deadline) keeps equal keys in insertion
// order, which is exactly the heap's tie rule.
TEST(TimerHeap, RandomisedAgainstMultimapModel) {
  TimerHeap heap;
  std::multimap<int64_t, uint64_t> model;  // deadline -> token
  std::unordered_map<uint64_t, std::pair<TimerId, std::multimap<int64_t, uint64_t>::iterator>> live;
  std::vector<TimerId> dead_ids;
  std::vector<uint64_t> live_tokens;  // for picking a random live timer
  std::mt19937_64 random(987654321);
  int64_t now = 0;
  uint64_t next_token = 0;

  auto forget = [&](uint64_t token) {
    auto found = live.find(token);
    ASSERT_NE(found, live.end());
    dead_ids.push_back(found->second.first);
    model.erase(found->second.second);
    live.erase(found);
    auto position = std::find(live_tokens.begin(), live_tokens.end(), token);
    ASSERT_NE(position, live_tokens.end());
    *position = live_tokens.back();
    live_tokens.pop_back();
  };

  for (int operation = 0; operation < 100'000; ++operation) {
    const int choice = static_cast<int>(random() % 100);
    if (choice < 45 || live.empty()) {
      // Small deadline range: many ties.
      const int64_t deadline = now + static_cast<int64_t>(random() % 200) - 20;
      const uint64_t token = next_token++;
      const TimerId id = heap.add(deadline, token);
      ASSERT_FALSE(heap.contains(kNoTimer));
      ASSERT_NE(id, kNoTimer);
      live.emplace(token, std::make_pair(id, model.emplace(deadline, token)));
      live_tokens.push_back(token);
    } else if (choice < 70) {
      const uint64_t token = live_tokens[random() % live_tokens.size()];
      ASSERT_TRUE(heap.remove(live.at(token).first));
      forget(token);
    } else if (choice < 80) {
      const uint64_t token = live_tokens[random() % live_tokens.size()];
      auto& entry = live.at(token);
      const int64_t deadline = now + static_cast<int64_t>(random() % 200) - 20;
      ASSERT_TRUE(heap.reschedule(entry.first, deadline));
      model.erase(entry.second);
      entry.second = model.emplace(deadline, token);
    } else if (choice < 90) {
      if (!dead_ids.empty()) {
        const TimerId stale = dead_ids[random() % dead_ids.size()];
        ASSERT_FALSE(heap.contains(stale));
        ASSERT_FALSE(heap.remove(stale));
        ASSERT_FALSE(heap.reschedule(stale, now));
      }
    } else {
      now += static_cast<int64_t>(random() % 30);
      std::vector<uint64_t> popped;
      const size_t count = heap.pop_expired(now, popped);
      ASSERT_EQ(count, popped.size());
      std::vector<uint64_t> expected;
      for (auto it = model.begin(); it != model.end() && it->first <= now; ++it) {
        expected.push_back(it->second);
      }
      ASSERT_EQ(popped, expected) << "operation " << operation;
      for (uint64_t token : popped) forget(token);
    }
    ASSERT_EQ(heap.size(), model.size());
    if (model.empty()) {
      ASSERT_FALSE(heap.next_deadline().has_value());
    } else {
      ASSERT_EQ(heap.next_deadline(), model.begin()->first);
    }
    if (dead_ids.size() > 4096) dead_ids.erase(dead_ids.begin(), dead_ids.begin() + 2048);
  }
  // Drain and compare the rest.
  std::vector<uint64_t> popped;
  heap.pop_expired(INT64_MAX, popped);
  std::vector<uint64_t> expected;
  for (const auto& [deadline, token] : model) expected.push_back(token);
  EXPECT_EQ(popped, expected);
}

TEST(MonotonicNs, NeverGoesBackwards) {
  int64_t previous = monotonic_ns();
  EXPECT_GT(previous, 0);
  for (int index = 0; index < 1000; ++index) {
    const int64_t current = monotonic_ns();
    ASSERT_GE(current, previous);
    previous = current;
  }
}

}  // namespace
}  // namespace tf::core
