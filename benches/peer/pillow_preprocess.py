#!/usr/bin/env python3
"""The Pillow baseline of benches/image_decode.rs: decode, convert, resize (Lanczos, as our
default) and scale to float32 0..1, as a Python preprocessing step does, on one core.

    pillow_preprocess.py IMAGE WIDTH HEIGHT MODE(L|RGB|decode|resize) ITERATIONS ROUNDS

MODE decode times only decoding to RGB, resize only the resize of an already decoded image.

Prints the median microseconds per image over ROUNDS rounds of ITERATIONS images.
"""
import io
import statistics
import sys
import time

import numpy as np
from PIL import Image


def main():
    path, width, height, mode, iterations, rounds = sys.argv[1:7]
    width, height, iterations, rounds = int(width), int(height), int(iterations), int(rounds)
    data = open(path, "rb").read()
    per_image = []
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(iterations):
            if mode == "decode":
                tensor = Image.open(io.BytesIO(data)).convert("RGB")
                tensor.load()
                continue
            if mode == "resize":
                tensor = decoded.resize((width, height), Image.LANCZOS)
                continue
            image = Image.open(io.BytesIO(data)).convert(mode)
            if image.size != (width, height):
                image = image.resize((width, height), Image.LANCZOS)
            tensor = np.asarray(image, dtype=np.float32) / 255.0
        per_image.append((time.perf_counter() - started) / iterations * 1e6)
    if mode not in ("decode", "resize"):
        assert tensor.shape[:2] == (height, width)
    print(f"{statistics.median(per_image):.1f}")


if __name__ == "__main__":
    main()
