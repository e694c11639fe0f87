// Bounded top-k heaps stored as plain arrays (scores[], ids[]).
// The functions are `static inline` on purpose: each instruction-set kernel file includes this
// header with its own compiler flags, and internal linkage keeps the linker from merging an
// AVX-512 copy into code that runs on older CPUs.
//
// The heap keeps the k best (score, id) pairs seen. "Better" means a higher score, or an equal
// score and a lower id: the same total order the results are sorted by. The root is the worst
// pair kept, so a candidate enters only when it beats the root. Empty slots hold
// (-inf, kEmptyId); kEmptyId is larger than any real id so a real item scoring -inf still wins.
#pragma once

#include <cstdint>
#include <limits>

namespace recfast {

constexpr int64_t kEmptyId = std::numeric_limits<int64_t>::max();

static inline bool better(float sa, int64_t ia, float sb, int64_t ib) {
  return sa > sb || (sa == sb && ia < ib);
}

// Fill a heap of size k with empty slots.
static inline void heap_init(float* scores, int64_t* ids, int64_t k) {
  for (int64_t i = 0; i < k; ++i) {
    scores[i] = -std::numeric_limits<float>::infinity();
    ids[i] = kEmptyId;
  }
}

// Sift (s, id) down from the root of the heap's first n slots.
static inline void heap_sift_down(float* scores, int64_t* ids, int64_t n, float s, int64_t id) {
  int64_t i = 0;
  for (;;) {
    int64_t child = 2 * i + 1;
    if (child >= n) break;
    // Pick the worse child: it must rise above (s, id) if (s, id) is better than it.
    if (child + 1 < n && better(scores[child], ids[child], scores[child + 1], ids[child + 1]))
      ++child;
    if (!better(s, id, scores[child], ids[child])) break;
    scores[i] = scores[child];
    ids[i] = ids[child];
    i = child;
  }
  scores[i] = s;
  ids[i] = id;
}

// Replace the root (the worst pair) by (s, id). Call only when better(s, id, root).
static inline void heap_replace_top(float* scores, int64_t* ids, int64_t k, float s, int64_t id) {
  heap_sift_down(scores, ids, k, s, id);
}

// Push (s, id) if it belongs to the k best kept so far.
static inline void heap_push(float* scores, int64_t* ids, int64_t k, float s, int64_t id) {
  if (better(s, id, scores[0], ids[0])) heap_sift_down(scores, ids, k, s, id);
}

// Turn a heap into a row sorted best first (heap sort), padding empty slots as id -1.
static inline void heap_sort_output(float* scores, int64_t* ids, int64_t k) {
  for (int64_t n = k; n > 1; --n) {
    // The root (the worst of the first n) goes to slot n - 1; the old last slot sifts down.
    const float s = scores[n - 1];
    const int64_t id = ids[n - 1];
    scores[n - 1] = scores[0];
    ids[n - 1] = ids[0];
    heap_sift_down(scores, ids, n - 1, s, id);
  }
  for (int64_t i = 0; i < k; ++i)
    if (ids[i] == kEmptyId) ids[i] = -1;
}

}  // namespace recfast
