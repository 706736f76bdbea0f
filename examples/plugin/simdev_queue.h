#pragma once
// A stream of the simulated device: a queue of work run in order by a worker
// thread of its own, so a call returns before its work is done (as on a GPU)
// and two streams really run concurrently. Events order work across streams.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace simdev {

class WorkQueue {
 public:
  WorkQueue();
  ~WorkQueue();  // runs what is queued, then stops the worker
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // `task` runs on the worker after everything pushed before it. A task that
  // throws leaves its message as the queue's error (the first one is kept).
  void push(std::function<void()> task);
  // Waits until every task pushed so far has run; returns the first error
  // since the last synchronize ("" if none) and clears it.
  std::string synchronize();

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> tasks_;
  uint64_t pushed_ = 0, done_ = 0;
  bool stopping_ = false;
  std::string error_;
  std::thread worker_;  // last: starts once the members above exist
};

// A point in a queue's work: record() marks where, wait()/synchronize() wait
// until every task before the most recent record() has run.
class Event {
 public:
  void record(WorkQueue& queue);
  void wait_on(WorkQueue& queue);  // queue's later work waits for the event
  void synchronize();              // the calling thread waits

 private:
  std::mutex mutex_;
  std::condition_variable reached_changed_;
  uint64_t recorded_ = 0;  // how many records were made
  uint64_t reached_ = 0;   // how many of them the queue has passed
};

}  // namespace simdev
