"""bench/merge/merge_numpy.py — the same linear and TIES formulas as
anneal's (docs/merging.md), in NumPy over np.memmap'd BF16 safetensors: the
peer a user would otherwise write. One tensor at a time, float32 math, bf16
round-to-nearest-even by uint32 bit arithmetic. Writes the output tensors'
raw bytes (no header) in the inputs' order, then fsyncs.

    python3 merge_numpy.py linear OUT W1,W2,W3 IN1 IN2 IN3
    python3 merge_numpy.py ties OUT DENSITY BASE IN1 IN2

Prints "seconds peak_rss_bytes". TIES here keeps every element whose |tau|
reaches the k-th largest (np.partition), so on ties at the threshold it may
keep a few more than anneal (which breaks ties by index): the same work,
not bit-identical output.
"""
import json
import os
import resource
import struct
import sys
import time

import numpy as np


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    hdr.pop("__metadata__", None)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = []
    for name, t in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        assert t["dtype"] == "BF16"
        a, b = t["data_offsets"]
        out.append((name, mm[8 + n + a: 8 + n + b].view(np.uint16)))
    return out


def to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def to_bf16(f32):
    u = f32.view(np.uint32)
    u = u + (np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1)))
    return (u >> 16).astype(np.uint16)


def linear(ins, weights):
    s = sum(weights)
    c = [np.float32(w / s) for w in weights]
    acc = c[0] * to_f32(ins[0])
    for ci, x in zip(c[1:], ins[1:]):
        acc += ci * to_f32(x)
    return to_bf16(acc)


def ties(base, ins, density):
    b = to_f32(base)
    n = b.size
    k = int(density * n)
    ds = []
    for x in ins:
        tau = to_f32(x) - b
        if k < n:
            mag = np.abs(tau)
            th = np.partition(mag, n - k)[n - k] if k > 0 else np.inf
            tau[mag < th] = 0
        ds.append(tau)
    total = sum(ds)
    sign = np.where(total >= 0, np.float32(1), np.float32(-1))
    m = np.zeros_like(b)
    div = np.zeros_like(b)
    for d in ds:
        agree = (np.sign(d) == sign) & (d != 0)
        m += np.where(agree, d, 0)
        div += agree
    div[div == 0] = 1
    return to_bf16(b + m / div)


def main():
    t0 = time.monotonic()
    method, out = sys.argv[1], sys.argv[2]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        if method == "linear":
            weights = [float(w) for w in sys.argv[3].split(",")]
            models = [tensors(p) for p in sys.argv[4:]]
            for i in range(len(models[0])):
                linear([m[i][1] for m in models], weights).tofile(f)
        else:
            density = float(sys.argv[3])
            base = tensors(sys.argv[4])
            models = [tensors(p) for p in sys.argv[5:]]
            for i in range(len(base)):
                ties(base[i][1], [m[i][1] for m in models], density).tofile(f)
        f.flush()
        os.fsync(f.fileno())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("%.6f %d" % (time.monotonic() - t0, rss))


if __name__ == "__main__":
    main()
