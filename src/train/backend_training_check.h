#pragma once
// The end-to-end row of qj-backend-test: a 2-layer GPT trains a few steps on
// the tested backend and on the cpu backend, from the same seed and data (a
// small random corpus written to a temporary folder), and the losses of every
// step must agree. The op rows prove each op alone; this proves that the ops,
// memory, copies and streams compose into training.
#include <string>
#include <vector>

namespace qj {

struct TrainingCheck {
  int steps = 0;
  std::vector<float> reference_losses, tested_losses;  // per step
  double max_rel_error = 0;  // max over steps of |tested - reference| / |reference|
  double tolerance = 0;
  bool passed = false;
  std::string message;  // why it failed to run (the backend threw), else ""
};

// Every step's loss within `tolerance` (relative). 1e-4: a backend's own
// kernels sum in another order than the cpu's; after a few steps of AdamW the
// losses of a correct backend agree to ~1e-6, a wrong gradient moves them by
// far more than 1e-4.
TrainingCheck run_training_check(const std::string& backend, int steps = 4,
                                 double tolerance = 1e-4);

}  // namespace qj
