#!/usr/bin/env python3
"""The Raspberry Pi boot state as boot.cmd.in keeps it, read and written independently of
fleetd: two U-Boot `env export -c -s 0x1000` images fleet-a.env / fleet-b.env on fleet-boot,
the valid one with the newer fleet_seq (hex, mod 0x10000) wins, writes go to the other one.

  fleetenv.py get BOOTDIR NAME         print NAME's value (empty when unset)
  fleetenv.py set BOOTDIR NAME [VALUE] set (or, without VALUE, delete) NAME
"""
import os
import sys
import zlib

SIZE = 0x1000
FILES = ("fleet-a.env", "fleet-b.env")


def read(path):
    try:
        b = open(path, "rb").read()
    except FileNotFoundError:
        return None
    if len(b) != SIZE or int.from_bytes(b[:4], "little") != zlib.crc32(b[4:]):
        return None
    env = {}
    for e in b[4:].split(b"\0"):
        if not e:
            break
        k, v = e.decode().split("=", 1)
        env[k] = v
    return env if "fleet_seq" in env else None


def current(boot):
    envs = [read(os.path.join(boot, f)) for f in FILES]
    seqs = [int(e["fleet_seq"], 16) & 0xFFFF if e else None for e in envs]
    if envs[0] and envs[1]:
        d = (seqs[0] - seqs[1]) & 0xFFFF
        i = 0 if 0 < d < 0x8000 else 1  # equal: b, as boot.cmd.in decides
    elif envs[0] or envs[1]:
        i = 0 if envs[0] else 1
    else:
        return None, {}, -1
    return i, envs[i], seqs[i]


def main():
    cmd, boot, name = sys.argv[1:4]
    i, env, seq = current(boot)
    if cmd == "get":
        print(env.get(name, ""))
        return
    if len(sys.argv) > 4 and sys.argv[4]:
        env[name] = sys.argv[4]
    else:
        env.pop(name, None)
    env["fleet_seq"] = "%x" % ((seq + 1) & 0xFFFF)
    data = b"".join(b"%s=%s\0" % (k.encode(), v.encode()) for k, v in sorted(env.items()))
    data = (data + b"\0").ljust(SIZE - 4, b"\0")
    target = FILES[0] if i is None else FILES[1 - i]
    with open(os.path.join(boot, target), "wb") as f:
        f.write(zlib.crc32(data).to_bytes(4, "little") + data)


main()
