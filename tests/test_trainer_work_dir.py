"""Trainings without a work folder (`RunOptions.work_dir` None) started from one folder at the same time."""

import csv
import subprocess
import sys
from pathlib import Path

from artseg import layout

# One training of a 1x1 conv on its own data (the seed scales it, so the two processes' losses differ);
# prints its summary's best loss, then the work folder it wrote to.
TRAIN = """
import sys, time, torch
from artseg import layout
from artseg.nn.trainer import TrainSettings, train_network
from artseg.run import RunOptions
seed = int(sys.argv[1])
torch.manual_seed(seed)
x = torch.randn(8, 1, 8, 8) * (1 + 3 * seed)
data = torch.utils.data.TensorDataset(x, (x > 0).float())

def loss(out, y):
    time.sleep(0.05)  # long enough for the two trainings to overlap
    return torch.nn.functional.binary_cross_entropy_with_logits(out, y)

run = RunOptions(device="cpu", progress=False)
train_network(torch.nn.Conv2d(1, 1, 1), data, None, loss,
              TrainSettings(lr=0.01, max_epochs=6, batch_size=4, scheduler="none"), run, name="net")
print(run.history[-1]["best_train_loss"])
print(layout.default_work_dir())
"""


def test_two_trainings_from_one_folder_keep_their_own_logs(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, str(seed)], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for seed in (0, 1)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        best, work = out.strip().splitlines()[-2:]
        results.append((float(best), Path(work)))
    (best0, work0), (best1, work1) = results
    assert work0 != work1 and work0.parent == work1.parent == tmp_path.resolve() / layout.DEFAULT_WORK_DIR  # the child's cwd is resolved
    for best, work in results:  # each summary is read from its own log, which holds its six epochs
        rows = list(csv.DictReader(open(layout.training_log_path(work, "net"))))
        assert len(rows) == 6
        assert best == round(min(float(r["train_loss"]) for r in rows), 4)
    assert best0 != best1
