"""The command line. Importing it sets how idle OpenMP threads wait, before anything loads torch.

torch's CPU kernels run on OpenMP threads that, by default, spin for a while at the end of every parallel
region waiting for work. On a machine whose cores are shared with other jobs (a 2-core laptop running a
benchmark, a CI runner) a spinning thread holds the core that its partner needs to finish the region, and a
training step of the demo took up to 16 s instead of 0.6 s (measured: Resources/Speed/report.md, "Demo
loop"). Passive waiting puts idle threads to sleep instead; it changes no result, only scheduling. The
variable is read once, when the OpenMP runtime loads, so it must be set before ``import torch``; a value the
user set is kept.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
