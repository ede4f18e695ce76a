#!/usr/bin/env python3
"""Loader benchmark: `bitkit loader bench` vs the PyTorch/torchvision peer, per BiT mode.

On the same real-photo corpus (../shared/bench/make_corpus.py, 4,000 ImageNet-like JPEGs),
in one run on the same cores: the peer (../shared/bench/peer_torchvision.py: DataLoader +
PIL + torchvision transforms, one worker process per core, float32 NCHW in [-1, 1]) and
bitkit's loader on the same images ingested with `bitkit ingest --format folder`, with
float32 NCHW output, uint8 NHWC output, and decode-only (the same DCT-scaled region decode
without resize or output: the ceiling). Both run one warm-up epoch and then two timed
epochs. Prints images/s and the ratios; the machine is shared and noisy, so only ratios
measured in one run mean anything.

Usage: scripts/bench-loader [--corpus DIR] [--modes small,large,upstream,test] [--threads N]
       [--batch B] [--python PY] [--json]
"""
import argparse, json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")


def lines_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(l) for l in out.strip().splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(ROOT, "target", "bench-corpus"))
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--modes", default="small,large,upstream,test")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--python", default=sys.executable, help="Python with torch + torchvision for the peer")
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
    for mode in a.modes.split(","):
        peer = lines_json([a.python, os.path.join(SHARED, "peer_torchvision.py"), folder, "--modes", mode,
                           "--batch", str(a.batch), "--workers", str(a.threads)])[0]
        row = {"mode": mode, "threads": a.threads, "batch": a.batch, "peer": peer["images_per_s"]}
        for name, extra in (("f32", ["--output", "f32"]), ("u8", ["--output", "u8"]),
                            ("decode_only", ["--decode-only"])):
            r = lines_json([a.bitkit, "loader", "bench", dataset, "--mode", mode, "--batch", str(a.batch),
                            "--threads", str(a.threads), "--json"] + extra)[0]
            row[name] = r["images_per_s"]
            row.setdefault("crop", r["crop"])
        row["ratio_f32"] = round(row["f32"] / row["peer"], 2)
        row["ratio_u8"] = round(row["u8"] / row["peer"], 2)
        row["f32_of_decode"] = round(row["f32"] / row["decode_only"], 2)
        results.append(row)
        if not a.json:
            print(f"{mode:<9} crop {row['crop']:<4} peer {row['peer']:>7.0f}  bitkit f32 {row['f32']:>7.0f} "
                  f"({row['ratio_f32']:.2f}x)  u8 {row['u8']:>7.0f} ({row['ratio_u8']:.2f}x)  "
                  f"decode-only {row['decode_only']:>7.0f}  f32/decode {row['f32_of_decode']:.2f}", flush=True)
    if a.json:
        print(json.dumps(results))
    else:
        print(f"(images/s; {a.threads} threads / worker processes each, batch {a.batch}; corpus {folder})")


if __name__ == "__main__":
    main()
