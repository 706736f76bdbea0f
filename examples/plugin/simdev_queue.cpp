#include "simdev_queue.h"

#include <exception>

namespace simdev {

WorkQueue::WorkQueue() : worker_([this] { run(); }) {}

WorkQueue::~WorkQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void WorkQueue::push(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back(std::move(task));
    ++pushed_;
  }
  changed_.notify_all();
}

std::string WorkQueue::synchronize() {
  std::unique_lock<std::mutex> lock(mutex_);
  const uint64_t target = pushed_;
  changed_.wait(lock, [&] { return done_ >= target; });
  std::string error;
  error.swap(error_);
  return error;
}

void WorkQueue::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and nothing left
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    std::string failure;
    try {
      task();
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (...) {
      failure = "unknown failure";
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!failure.empty() && error_.empty()) error_ = failure;
      ++done_;
    }
    changed_.notify_all();
  }
}

void Event::record(WorkQueue& queue) {
  uint64_t mark;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    mark = ++recorded_;
  }
  queue.push([this, mark] {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (mark > reached_) reached_ = mark;
    }
    reached_changed_.notify_all();
  });
}

void Event::wait_on(WorkQueue& queue) {
  uint64_t target;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    target = recorded_;
  }
  queue.push([this, target] {
    std::unique_lock<std::mutex> lock(mutex_);
    reached_changed_.wait(lock, [&] { return reached_ >= target; });
  });
}

void Event::synchronize() {
  std::unique_lock<std::mutex> lock(mutex_);
  const uint64_t target = recorded_;
  reached_changed_.wait(lock, [&] { return reached_ >= target; });
}

}  // namespace simdev
