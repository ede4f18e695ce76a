#!/usr/bin/env python3
"""Training benchmark: `bitkit train` vs PyTorch eager on the same BiT ResNet-v2 R50x1.

For each resolution, in one run on the same cores: the peer (scripts/peer_bit_torch.py, BiT's
bit_pytorch model in PyTorch 2.11 eager, SGD momentum 0.9, random tensors: no data loading)
and `bitkit train upstream --model r50x1` on the real-photo corpus
(../shared/bench/make_corpus.py) at the same batch and resolution, with bitkit's loader
decoding JPEGs on the same cores. Prints images/s of the timed updates (the median over
updates after the warm-up), bitkit's fraction of time waiting for data, and the ratio.

Usage: scripts/bench-train [--resolutions 128,224] [--batch 16] [--steps 4] [--threads N]
       [--device cpu|cuda] [--bf16] [--json]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(ROOT, "target", "bench-corpus"))
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--resolutions", default="128,224")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4, help="timed updates")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv", "bin", "python"))
    ap.add_argument("--bitkit", default=os.path.join(ROOT, "target", "release", "bitkit"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    folder = os.path.join(a.corpus, "folder")
    if not os.path.isdir(folder):
        subprocess.run([sys.executable, os.path.join(SHARED, "make_corpus.py"), a.corpus, "--images", str(a.images),
                        "--tfrecord-shards", "8"], check=True)
    dataset = os.path.join(a.corpus, "bitkit-folder-dataset")
    if not os.path.isfile(os.path.join(dataset, "dataset.json")):
        subprocess.run([a.bitkit, "ingest", "--format", "folder", folder, "--out", dataset, "--quiet"], check=False)
    results = []
    for res in [int(r) for r in a.resolutions.split(",")]:
        peer_cmd = [a.python, os.path.join(ROOT, "scripts", "peer_bit_torch.py"), "--resolution", str(res),
                    "--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup),
                    "--threads", str(a.threads), "--device", a.device]
        if a.bf16:
            peer_cmd.append("--bf16")
        if a.device != "cpu":
            peer_cmd.append("--channels-last")
        out = subprocess.run(peer_cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        peer = json.loads(out.strip().splitlines()[-1])
        run = tempfile.mkdtemp(prefix="bitkit-bench-train-")
        try:
            cmd = [a.bitkit, "train", "upstream", "--data", dataset, "--model", "r50x1", "--out", run,
                   "--mode", "test", "--crop", str(res), "--batch", str(a.batch), "--micro-batch", str(a.batch),
                   "--max-updates", str(a.warmup + a.steps), "--checkpoint-every", "1000000",
                   "--keep-checkpoints", "1", "--threads", str(a.threads), "--loader-threads", str(a.threads),
                   "--device", a.device, "--json"]
            if a.bf16:
                cmd += ["--precision", "bf16"]
            subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
            steps = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if '"loss"' in l]
        finally:
            shutil.rmtree(run, ignore_errors=True)
        timed = steps[a.warmup:]
        ips = statistics.median(s["images_per_s"] for s in timed)
        wait = statistics.median(s["data_wait"] for s in timed)
        row = {"model": "r50x1", "resolution": res, "batch": a.batch, "threads": a.threads, "device": a.device,
               "bf16": a.bf16, "peer_images_per_s": round(peer["images_per_s"], 2),
               "bitkit_images_per_s": round(ips, 2), "bitkit_data_wait": round(wait, 3),
               "ratio": round(ips / peer["images_per_s"], 3)}
        results.append(row)
        if not a.json:
            print(f"R50x1 @{res} batch {a.batch} {a.device} ({a.threads} threads): PyTorch eager "
                  f"{row['peer_images_per_s']} img/s, bitkit {row['bitkit_images_per_s']} img/s "
                  f"({100 * wait:.0f}% waiting for data), ratio {row['ratio']}x", flush=True)
    if a.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
