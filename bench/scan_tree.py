#!/usr/bin/env python3
"""Writes a source-like tree for bench/scan.sh: SIZE_MB of text in many files (code-ish lines
of words, identifiers, numbers and base64 blobs), a few binaries, and PLANTED secrets at known
places: Tollgate keys (valid checksum), OpenAI keys and AWS key ids. Prints the planted count.

usage: scan_tree.py DIR SIZE_MB PLANTED"""
import os
import random
import string
import sys
import zlib

ALPHA = string.digits + string.ascii_uppercase + string.ascii_lowercase


def base62(value, width):
    out = []
    for _ in range(width):
        value, r = divmod(value, 62)
        out.append(ALPHA[r])
    return "".join(reversed(out))


def tollgate_key(rng):
    body = "".join(rng.choice(ALPHA) for _ in range(43))
    signed = "sk-proj-" + body
    return signed + base62(zlib.crc32(signed.encode()), 6)


def openai_key(rng):
    part = lambda n: "".join(rng.choice(ALPHA + "-_") for _ in range(n))
    return "sk-proj-" + part(74) + "T3BlbkFJ" + part(74)


def aws_key(rng):
    return "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))


def main():
    root, size_mb, planted = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(7)
    words = ["def", "return", "self", "value", "config", "client", "request", "token", "model",
             "import", "const", "let", "function", "async", "await", "if", "else", "for", "in",
             "proj", "admin", "key", "secret", "sk", "api", "data", "user", "list", "map", "error"]
    # A pool of lines, so that writing 1 GB does not take longer than scanning it.
    pool = []
    for _ in range(20000):
        kind = rng.random()
        if kind < 0.1:
            line = "".join(rng.choice(ALPHA + "+/") for _ in range(76))
        elif kind < 0.2:
            line = "    # " + " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
        else:
            ident = "_".join(rng.choice(words) for _ in range(2))
            args = ", ".join(rng.choice(words) + str(rng.randint(0, 999)) for _ in range(rng.randint(0, 4)))
            line = "    " * rng.randint(0, 3) + f"{ident} = {rng.choice(words)}({args})"
        pool.append(line + "\n")
    target = size_mb * 1024 * 1024
    written = 0
    files = []
    n = 0
    while written < target:
        d = os.path.join(root, f"pkg{n // 200:04d}", f"mod{(n // 20) % 10}")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"file{n}.py")
        size = rng.choice([4, 16, 64, 256]) * 1024
        chunk = []
        got = 0
        while got < size:
            line = rng.choice(pool)
            chunk.append(line)
            got += len(line)
        with open(path, "w") as f:
            f.writelines(chunk)
        files.append(path)
        written += got
        n += 1
    for i in range(20):
        with open(os.path.join(root, f"pkg0000/blob{i}.bin"), "wb") as f:
            f.write(b"\0" + os.urandom(256 * 1024))
    makers = [tollgate_key, openai_key, aws_key]
    for i in range(planted):
        path = rng.choice(files)
        with open(path, "a") as f:
            f.write(f'LEAKED_{i} = "{makers[i % 3](rng)}"\n')
    print(planted)


if __name__ == "__main__":
    main()
