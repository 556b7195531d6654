// Thread-count control shared by every kernel family (the pool of common/parallel.h runs them).
#pragma once
#include <cstdint>

namespace fastnn {

// Threads a kernel may use: set_num_threads() if called, else OMP_NUM_THREADS, else the cores
// this process may run on.
int num_threads();
void set_num_threads(int n);

// Threads worth using for `work` units (roughly multiply-adds): small jobs run on one thread,
// because waking a second costs more than it saves.
int threads_for(double work, double min_work_per_thread = 65536.0);

}  // namespace fastnn
