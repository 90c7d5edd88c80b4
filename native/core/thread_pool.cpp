#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace lt {
namespace {

struct Job {
  std::function<void(int64_t, int64_t)> body;
  int64_t n = 0, chunk = 1;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> remaining{0};  // chunks not yet finished
  std::mutex doneMutex;
  std::condition_variable done;
  std::exception_ptr error;
  std::mutex errorMutex;

  // Claims and runs chunks until none are left; returns when this thread ran out of work.
  void work() {
    for (;;) {
      int64_t begin = next.fetch_add(chunk);
      if (begin >= n) return;
      int64_t end = std::min(n, begin + chunk);
      try {
        body(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(errorMutex);
        if (!error) error = std::current_exception();
      }
      if (remaining.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(doneMutex);
        done.notify_all();
      }
    }
  }
};

class Pool {
 public:
  explicit Pool(int threads) { start(threads); }
  ~Pool() { stop(); }

  int size() const { return int(workers_.size()) + 1; }

  // When the system refuses a thread, the pool goes back to its old size and the error says so.
  void resize(int threads) {
    int before = size();
    stop();
    try {
      start(threads);
    } catch (const std::system_error& e) {
      int made = size();
      stop();
      // If even the old size cannot be had again, the pool keeps what started (at least the
      // calling thread, which always works).
      try {
        start(before);
      } catch (const std::system_error&) {
      }
      throw std::runtime_error("could not start " + std::to_string(threads) + " threads (the system refused after " +
                               std::to_string(made) + ": " + e.what() + "); now using " + std::to_string(size()));
    }
  }

  void run(const std::shared_ptr<Job>& job, int helpers) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (int i = 0; i < helpers; i++) queue_.push_back(job);
    }
    cv_.notify_all();
    job->work();
    std::unique_lock<std::mutex> lock(job->doneMutex);
    job->done.wait(lock, [&] { return job->remaining.load() == 0; });
  }

 private:
  void start(int threads) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = false;
    }
    for (int i = 1; i < threads; i++) workers_.emplace_back([this] { loop(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    // A parallelFor on another thread may be queuing helpers right now; its own thread runs every
    // chunk left unclaimed, so dropping them loses no work.
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.clear();
  }

  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job->work();
    }
  }

  std::vector<std::thread> workers_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

int defaultThreads() {
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : int(hw);
}

std::mutex poolMutex;
std::unique_ptr<Pool>& pool() {
  static std::unique_ptr<Pool> instance = std::make_unique<Pool>(defaultThreads());
  return instance;
}

}  // namespace

void parallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t minChunk) {
  if (n <= 0) return;
  Pool* p;
  int threads;
  {
    // The size is read under the lock too: setThreadCount may be resizing the worker list.
    std::lock_guard<std::mutex> lock(poolMutex);
    p = pool().get();
    threads = p->size();
  }
  // About 4 chunks per thread balances uneven rows (causal attention) without much overhead.
  int64_t chunk = std::max<int64_t>(minChunk, n / (int64_t(threads) * 4));
  chunk = std::max<int64_t>(chunk, 1);
  int64_t chunks = (n + chunk - 1) / chunk;
  if (threads == 1 || chunks == 1) {
    body(0, n);
    return;
  }
  auto job = std::make_shared<Job>();
  job->body = body;
  job->n = n;
  job->chunk = chunk;
  job->remaining = chunks;
  p->run(job, int(std::min<int64_t>(threads - 1, chunks - 1)));
  if (job->error) std::rethrow_exception(job->error);
}

int threadCount() {
  std::lock_guard<std::mutex> lock(poolMutex);
  return pool()->size();
}

void setThreadCount(int threads) {
  std::lock_guard<std::mutex> lock(poolMutex);
  pool()->resize(threads <= 0 ? defaultThreads() : threads);
}

}  // namespace lt
