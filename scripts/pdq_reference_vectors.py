#!/usr/bin/env python3
"""Reference PDQ hashes for bitkit's PDQ tests, from Meta's C++ implementation.

The `pdqhash` package (PyPI) compiles Meta's ThreatExchange PDQ C++ (`pdqHash256FromFloatLuma`,
`pdqDihedralHash256esFromFloatLuma`) and feeds it luma computed as
`float32(R * 0.299 + G * 0.587 + B * 0.114)` in float64. This script builds small grayscale
test images from integers only (so the Rust test rebuilds the same pixels exactly, see
`reference_image` in dedup/src/pdq.rs), hashes them with `pdqhash.compute_dihedral`, and prints
the Rust table of expected hashes (hex in the reference's word order) and qualities.

Usage: .venv/bin/python scripts/pdq_reference_vectors.py   (needs: pip install pdqhash numpy)
"""
import numpy as np
import pdqhash

M = (1 << 64) - 1
SIZES = [(5, 9, 1), (32, 32, 2), (32, 32, 3), (61, 97, 4), (64, 64, 5), (125, 94, 6), (94, 125, 7),
         (250, 188, 8), (500, 375, 9), (1024, 768, 10)]


def reference_image(width, height, seed):
    """A 9x9 grid of random levels (xorshift64), blocky, plus a diagonal ramp: integer-only."""
    s = (seed * 0x9E3779B97F4A7C15 + 1) & M
    grid = []
    for _ in range(81):
        s ^= (s << 13) & M
        s ^= s >> 7
        s ^= (s << 17) & M
        grid.append(s % 200)
    img = np.zeros((height, width, 3), dtype=np.uint8)
    for y in range(height):
        for x in range(width):
            v = (grid[(y * 9 // height) * 9 + x * 9 // width] + (x * 7 + y * 13 + seed * 5) % 56) % 256
            img[y, x] = (v, v, v)
    return img


def to_hex(bits):
    # `hash_to_vector` reverses the 256 bits: vector[255 - k] is bit k.
    value = 0
    for k in range(256):
        value |= int(bits[255 - k]) << k
    return f"{value:064x}"


print("const REFERENCE: [(u32, u32, u64, u8, [&str; 8]); %d] = [" % len(SIZES))
for w, h, seed in SIZES:
    hashes, quality = pdqhash.compute_dihedral(reference_image(w, h, seed))
    print(f"    ({w}, {h}, {seed}, {quality}, [")
    for bits in hashes:
        print(f'        "{to_hex(bits)}",')
    print("    ]),")
print("];")
