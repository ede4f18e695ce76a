#!/usr/bin/env python3
"""Ingest benchmark: bitkit vs the Python peer (tarfile + Pillow + pyarrow, one process per core).

Runs both, alternating, on the same real-photo corpus (../shared/bench/make_corpus.py) for the
ImageNet-21k tar layout and the TFRecord layout, with the same number of workers, and prints
images/s, MB/s and the ratio bitkit/peer (best of --repeat runs each; the machine is shared and
noisy, so only the ratio measured in one run is meaningful). bitkit verifies both TFRecord CRCs
and hashes every image with blake3, as the issue requires; the peer does neither CRC check.

Usage: scripts/bench-ingest [--corpus DIR] [--images N] [--repeat K] [--workers W] [--json]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def warm(path):
    # Same page-cache state for both: read every byte once before timing.
    for dp, _, fs in os.walk(path):
        for f in fs:
            with open(os.path.join(dp, f), "rb") as fh:
                while fh.read(1 << 22):
                    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(ROOT, "target", "bench-corpus"))
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--bitkit", default=os.path.join(ROOT, "target", "release", "bitkit"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.corpus, "imagenet21k")):
        subprocess.run([sys.executable, os.path.join(SHARED, "make_corpus.py"), a.corpus, "--images", str(a.images),
                        "--tfrecord-shards", "8"], check=True)
    results = []
    layouts = [("imagenet-tar", "imagenet21k"), ("tfrecord", "tfrecord")]
    with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, "target")) as tmp:
        for fmt, sub in layouts:
            src = os.path.join(a.corpus, sub)
            warm(src)
            best = {"bitkit": None, "peer": None}
            for rep in range(a.repeat):
                for who in ("peer", "bitkit"):
                    out = os.path.join(tmp, f"{who}-{fmt}-{rep}")
                    # Start each run with no dirty pages of the previous one pending writeback.
                    os.sync()
                    time.sleep(0.5)
                    if who == "peer":
                        r = run_json([sys.executable, os.path.join(SHARED, "peer_ingest.py"), fmt, src, out,
                                      "--workers", str(a.workers)])
                    else:
                        r = run_json([a.bitkit, "ingest", "--format", fmt, src, "--out", out, "--workers",
                                      str(a.workers), "--json", "--quiet"])
                        r = {"images": r["records_written"], "images_per_s": r["images_per_s"],
                             "mb_per_s": r["mb_per_s"], "seconds": r["seconds"], "rejected": r["records_rejected"]}
                    shutil.rmtree(out, ignore_errors=True)
                    if best[who] is None or r["images_per_s"] > best[who]["images_per_s"]:
                        best[who] = r
            ratio = best["bitkit"]["images_per_s"] / best["peer"]["images_per_s"]
            results.append({"format": fmt, "workers": a.workers, "bitkit": best["bitkit"], "peer": best["peer"],
                            "ratio": round(ratio, 2)})
    if a.json:
        print(json.dumps(results))
        return
    print(f"{'format':<14}{'bitkit img/s':>14}{'bitkit MB/s':>13}{'peer img/s':>12}{'peer MB/s':>11}{'ratio':>8}")
    for r in results:
        b, p = r["bitkit"], r["peer"]
        print(f"{r['format']:<14}{b['images_per_s']:>14.0f}{b['mb_per_s']:>13.1f}{p['images_per_s']:>12.0f}"
              f"{p['mb_per_s']:>11.1f}{r['ratio']:>7.2f}x")
    print(f"({a.workers} workers each, best of {a.repeat}; corpus {a.corpus})")


if __name__ == "__main__":
    main()
