"""An Azure ML v1 training script (stdlib only) that uses every Run call runctl supports."""

import argparse
import json
import math
import os
import struct
import zlib

from azureml.core import Run


def tiny_png(path):
    """Write a 2x2 red PNG without any imaging library."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

run = Run.get_context()
print("run", run.id, "number", run.number, "experiment", run.experiment.name, "status", run.status)

# scalars, with and without steps; repeated names become a list
for epoch in range(args.epochs):
    run.log("validation", 1.0 / (epoch + 1), step=epoch)
run.log("learning_rate", 0.01, description="constant")
run.log("model", "resnet-ish")
run.log("diverged", float("nan"))
run.log("best", float("inf"))
run.log_list("accuracies", [0.5, 0.7, 0.9])
for x in range(3):
    run.log_row("curve", x=x, y=x * x)
run.log_table("table", {"a": [1, 2], "b": ["u", "v"]})
run.log_confusion_matrix("cm", {"schema_type": "confusion_matrix", "schema_version": "1.0.0",
                                "data": {"class_labels": ["a", "b"], "matrix": [[3, 1], [0, 4]]}})
tiny_png("plot.png")
run.log_image("sample", path="plot.png")

try:
    run.log("bad", [1, 2])
except Exception as e:
    print("list rejected:", e)

run.tag("stage", "train")
run.set_tags({"owner": "lab", "gpu": None})
run.add_properties({"dataset": "v3"})
run.display_name = "v1 script, renamed"

os.makedirs("outputs", exist_ok=True)
with open("outputs/model.json", "w") as f:
    json.dump({"w": 1}, f)
with open("notes.txt", "w") as f:
    f.write("uploaded by upload_file\n")
run.upload_file("extra/notes.txt", "notes.txt")
os.makedirs("cfg", exist_ok=True)
for name in ("a.yaml", "b.yaml"):
    with open(os.path.join("cfg", name), "w") as f:
        f.write(name)
run.upload_folder("config", "cfg")
run.flush()
print("files:", sorted(run.get_file_names()))
run.download_file("extra/notes.txt", "downloaded.txt")
print("downloaded:", open("downloaded.txt").read().strip())

child = run.child_run(name="fold-0")
child.log("fold_loss", 0.25)
child.complete()
for i, c in enumerate(run.create_children(count=2)):
    c.log("child_metric", i)
    c.complete()
with run.child_run(name="ctx") as c:
    c.log("inside", math.pi)
print("children:", len(list(run.get_children())), "parent ok:", child.parent is run)

run.flush()
print("metrics seen in the job:", sorted(run.get_metrics()))
run.complete()
