#!/usr/bin/env python3
"""Dedup evaluation: recall per transformation and false positives on distinct images.

Built from real photographs (the wallpaper photos ../shared/bench/make_corpus.py downloads):
- the photos are split in two disjoint groups; the first is cut, at 9 scales, into
  non-overlapping textured 128x128 tiles (grayscale std >= 20 at 128 and at 32 px, no two whose 16x16
  thumbnails correlate > 0.9 under any flip or rotation), and
  10,000 of them, area-downsampled to 32x32, form a CIFAR-10-format test set
  (`cifar-10-batches-bin/test_batch.bin`);
- the upstream dataset holds, for --per-transform test tiles each, a large transformed copy of
  the tile: resize (2x, JPEG q90), JPEG q20, horizontal flip, grayscale, brightness +25%,
  contrast -25%, crop 2% and 5% (of each side pair), letterbox padding (black bars, 12% of the
  height), the tile itself (same framing), and the weak spots crop 10% and rotation 5 degrees;
- plus --distinct tiles of the second photo group, filtered the same way against each other and
  against the test tiles: every verified match of one of these is a false positive.
`bitkit ingest --format folder` + `bitkit dedup --against cifar10-test`, then recall per
transformation (candidate found = the right test image within the search radius; verified =
verdict `duplicate`) and the false-positive counts are printed.

Usage: scripts/eval-dedup [--per-transform 100] [--distinct 3000] [--upscale 2] [--json] [-- extra dedup flags]
"""
import argparse, atexit, io, json, os, random, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")
TRANSFORMS = ["same_framing", "resize", "jpeg_q20", "flip", "grayscale", "brightness", "contrast",
              "crop_2pct", "crop_5pct", "letterbox", "crop_10pct", "rotate_5deg"]
WEAK = {"crop_10pct", "rotate_5deg"}


def signature(tile):
    import numpy as np
    from PIL import Image
    v = np.asarray(tile.convert("L").resize((16, 16), Image.BOX), dtype=np.float32)
    v = v - v.mean()
    n = np.linalg.norm(v)
    return v / n if n > 0 else None


def dihedral(v):
    import numpy as np
    out = []
    for k in range(4):
        r = np.rot90(v, k)
        out += [r.ravel(), np.fliplr(r).ravel()]
    return np.stack(out)


def distinct_only(tiles, limit, against=None):
    """Keeps tiles whose 16x16 grayscale thumbnail correlates <= 0.9 with every kept tile (and
    every tile of `against`) under all 8 flips/rotations: the wallpaper packages share photos,
    artwork is often mirror-symmetric and textures repeat, and a test set with near-duplicates
    of itself (or "distinct" images that duplicate it) would blur recall and false positives.
    Returns the tiles and their signatures."""
    import numpy as np
    kept = []
    bank = [] if against is None else [against]
    signatures = np.zeros((0, 256), dtype=np.float32)
    for tile in tiles:
        v = signature(tile)
        if v is None:
            continue
        variants = dihedral(v)
        stacks = [b for b in bank + [signatures] if len(b)]
        if any(float((b @ variants.T).max()) > 0.9 for b in stacks):
            continue
        kept.append(tile)
        signatures = np.vstack([signatures, v.ravel()[None, :]])
        if len(kept) >= limit:
            break
    return kept, signatures


# Each photo is tiled at these long sides (px): one scale gives only ~3,800 distinct textured
# tiles from the 59 test-group photos, nine give the 10,000 the issue asks for. A tile at one
# scale is at most a 16%-crop-and-zoom of an overlapping tile at the next, and `distinct_only`
# drops any pair that still looks alike.
LONG_SIDES = (3200, 2700, 2262, 1900, 1600, 1350, 1131, 950, 800)


def tiles(photos, long_sides, side, min_std, rng):
    from PIL import Image, ImageStat
    out = []
    for path in photos:
        original = Image.open(path).convert("RGB")
        for long_side in long_sides:
            scale = long_side / max(original.size)
            size = (max(side, round(original.size[0] * scale)), max(side, round(original.size[1] * scale)))
            img = original.resize(size, Image.BOX)
            for y in range(0, img.size[1] - side + 1, side):
                for x in range(0, img.size[0] - side + 1, side):
                    tile = img.crop((x, y, x + side, y + side))
                    # Textured at 128 px and still at 32 px: fine grain averages out to a flat
                    # 32x32 image, which no perceptual hash can tell from other flat images.
                    gray = tile.convert("L")
                    if (ImageStat.Stat(gray).stddev[0] >= min_std
                            and ImageStat.Stat(gray.resize((32, 32), Image.BOX)).stddev[0] >= min_std):
                        out.append(tile)
    rng.shuffle(out)
    return out


def transform(tile, name, rng, upscale=2):
    from PIL import Image, ImageEnhance, ImageOps
    big = tile.resize((tile.size[0] * upscale, tile.size[1] * upscale), Image.BICUBIC)
    w, h = big.size
    quality = 90
    if name == "same_framing":
        out = tile
    elif name == "resize":
        out = big
    elif name == "jpeg_q20":
        out, quality = big, 20
    elif name == "flip":
        out = ImageOps.mirror(big)
    elif name == "grayscale":
        out = big.convert("L").convert("RGB")
    elif name == "brightness":
        out = ImageEnhance.Brightness(big).enhance(1.25)
    elif name == "contrast":
        out = ImageEnhance.Contrast(big).enhance(0.75)
    elif name.startswith("crop_"):
        f = {"crop_2pct": 0.02, "crop_5pct": 0.05, "crop_10pct": 0.10}[name]
        dx, dy = round(w * f), round(h * f)
        left, top = rng.randint(0, dx), rng.randint(0, dy)
        out = big.crop((left, top, w - (dx - left), h - (dy - top)))
    elif name == "letterbox":
        bar = round(h * 0.12)
        out = Image.new("RGB", (w, h + 2 * bar), (0, 0, 0))
        out.paste(big, (0, bar))
    elif name == "rotate_5deg":
        out = big.rotate(5, resample=Image.BICUBIC, expand=False)
    else:
        raise ValueError(name)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=os.path.join(ROOT, "target", "bench-corpus", ".photos"))
    ap.add_argument("--test-images", type=int, default=10000)
    ap.add_argument("--per-transform", type=int, default=100)
    ap.add_argument("--distinct", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--upscale", type=int, default=2,
                    help="upstream copies are the 128 px tile upscaled this many times (2: 256 px, 3: 384 px, "
                         "about an ImageNet photo's shorter side)")
    ap.add_argument("--bitkit", default=os.path.join(ROOT, "target", "release", "bitkit"))
    ap.add_argument("--keep", help="keep the generated data and outputs in this directory")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("dedup_args", nargs="*")
    a = ap.parse_args()
    sys.path.insert(0, SHARED)
    import make_corpus
    from PIL import Image
    import pyarrow.parquet as pq
    rng = random.Random(a.seed)
    photos = make_corpus.fetch_photos(a.photos)
    split = len(photos) * 2 // 3
    test_tiles, test_signatures = distinct_only(tiles(photos[:split], LONG_SIDES, 128, 20.0, rng), a.test_images)
    distinct_tiles, _ = distinct_only(tiles(photos[split:], LONG_SIDES, 128, 20.0, rng), a.distinct, test_signatures)
    if len(test_tiles) < a.test_images:
        print(f"note: only {len(test_tiles)} textured test tiles available", file=sys.stderr)
    work = a.keep or tempfile.mkdtemp(dir=os.path.join(ROOT, "target"))
    if not a.keep:
        # ~100-150 MB of generated images and outputs per run.
        atexit.register(shutil.rmtree, work, True)
    data = os.path.join(work, "data", "cifar-10-batches-bin")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "test_batch.bin"), "wb") as out:
        for i, tile in enumerate(test_tiles):
            r, g, b = tile.resize((32, 32), Image.BOX).split()
            out.write(bytes([i % 10]) + r.tobytes() + g.tobytes() + b.tobytes())
    up = os.path.join(work, "upstream", "images")
    os.makedirs(up, exist_ok=True)
    planted = {}
    chosen = rng.sample(range(len(test_tiles)), min(len(test_tiles), a.per_transform * len(TRANSFORMS)))
    for k, name in enumerate(TRANSFORMS):
        for j in chosen[k * a.per_transform:(k + 1) * a.per_transform]:
            key = f"{name}_{j:05d}"
            with open(os.path.join(up, key + ".jpg"), "wb") as f:
                f.write(transform(test_tiles[j], name, rng, a.upscale))
            planted[key] = (name, j)
    for i, tile in enumerate(distinct_tiles):
        big = tile.resize((tile.size[0] * a.upscale, tile.size[1] * a.upscale), Image.BICUBIC)
        big.save(os.path.join(up, f"distinct_{i:05d}.jpg"), "JPEG", quality=90)
    ds = os.path.join(work, "upstream-ds")
    if not os.path.isfile(os.path.join(ds, "dataset.json")):
        subprocess.run([a.bitkit, "ingest", "--format", "folder", os.path.dirname(up), "--out", ds, "--quiet"], check=False)
    out_dir = os.path.join(work, "dedup")
    summary = json.loads(subprocess.run(
        [a.bitkit, "dedup", ds, "--against", "cifar10-test", "--data-dir", os.path.join(work, "data"),
         "--out", out_dir, "--json"] + a.dedup_args, check=True, stdout=subprocess.PIPE, text=True).stdout)
    pairs = pq.read_table(os.path.join(out_dir, "pairs.parquet")).to_pylist()
    found, verified, fp_distinct, fp_wrong = {}, {}, 0, 0
    for p in pairs:
        key = p["upstream_key"].split("/")[-1]
        if key.startswith("distinct_"):
            fp_distinct += p["verdict"] == "duplicate"
            continue
        name, j = planted[key]
        if p["test_index"] == j:
            found[key] = True
            verified[key] = verified.get(key, False) or p["verdict"] == "duplicate"
        elif p["verdict"] == "duplicate":
            fp_wrong += 1
    rows = []
    for name in TRANSFORMS:
        keys = [k for k, (n, _) in planted.items() if n == name]
        rows.append({"transform": name, "n": len(keys), "weak_spot": name in WEAK,
                     "recall_candidates": round(sum(found.get(k, False) for k in keys) / len(keys), 3),
                     "recall_verified": round(sum(verified.get(k, False) for k in keys) / len(keys), 3)})
    result = {"test_images": len(test_tiles), "distinct_upstream": len(distinct_tiles), "per_transform": rows,
              "false_positives_distinct": fp_distinct, "false_positives_wrong_test_image": fp_wrong,
              "candidates": summary["test_sets"][0]["candidates"], "dedup_flags": a.dedup_args}
    if a.json:
        print(json.dumps(result))
        return
    print(f"{'transform':<14}{'n':>5}{'recall (candidate)':>20}{'recall (verified)':>19}")
    for r in rows:
        print(f"{r['transform']:<14}{r['n']:>5}{r['recall_candidates']:>20.3f}{r['recall_verified']:>19.3f}"
              + ("   (weak spot)" if r["weak_spot"] else ""))
    print(f"false positives: {fp_distinct} verified matches of {len(distinct_tiles)} distinct upstream images, "
          f"{fp_wrong} planted copies verified against a wrong test image; {result['candidates']} candidate pairs "
          f"against {len(test_tiles)} test images")


if __name__ == "__main__":
    main()
