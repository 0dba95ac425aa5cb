"""What nginx sent of the bundle, from the test's access log (log_format bytes:
'$status $body_bytes_sent "$http_range"').

    access_log.py overlap LOG1 LOG2       bytes of the bundle sent in both logs
    access_log.py within LOG START END    bytes of [START, END) sent in LOG
    access_log.py bundle LOG              bytes of the bundle sent in LOG (without the
                                          multipart framing around several ranges)

A multi-range request ("bytes=A-B,C-D") is counted as its ranges in order, up to the body
bytes logged (its part headers counted as range bytes: an over-estimate, never under); a
200 is the file from its start.
"""
import re
import sys


def sent(path):
    out = []
    for line in open(path):
        m = re.match(r'^(\d+) (\d+) "(.*)"', line)
        if not m:
            continue
        status, n, header = m.group(1), int(m.group(2)), m.group(3)
        if status == "200":
            out.append((0, n))
        elif status == "206" and header.startswith("bytes="):
            for r in header[len("bytes="):].split(","):
                if n <= 0:
                    break
                a, b = (int(x) for x in r.split("-"))
                take = min(n, b - a + 1)
                out.append((a, a + take))
                n -= take
    return out


def overlap(a, b):
    return sum(max(0, min(x1, y1) - max(x0, y0)) for x0, x1 in a for y0, y1 in b)


if __name__ == "__main__":
    if sys.argv[1] == "overlap":
        print(overlap(sent(sys.argv[2]), sent(sys.argv[3])))
    elif sys.argv[1] == "bundle":
        print(sum(b - a for a, b in sent(sys.argv[2])))
    elif sys.argv[1] == "within":
        print(overlap(sent(sys.argv[2]), [(int(sys.argv[3]), int(sys.argv[4]))]))
    else:
        sys.exit(__doc__)
