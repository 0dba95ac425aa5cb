"""Checks conf/config.schema.json against the corpus, and the host CLI's validate output."""
import json
import pathlib
import subprocess
import sys

import jsonschema

top = pathlib.Path(sys.argv[1])
failed = 0


def case(name, ok, why=""):
    global failed
    if ok:
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {why}")


schema = json.loads((top / "conf/config.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(
    schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
case("schema is a valid draft 2020-12 schema", True)

corpus = top / "tests/data/config"
for path in sorted((corpus / "valid").glob("*.json")):
    errors = list(validator.iter_errors(json.loads(path.read_text())))
    case(f"schema accepts valid/{path.name}", not errors, "; ".join(e.message for e in errors))

for path in sorted((corpus / "invalid").glob("*.json")):
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        case(f"schema refuses invalid/{path.name} (not JSON)", True)
        continue
    case(f"schema refuses invalid/{path.name}", not validator.is_valid(doc), "accepted")

sample = json.loads((top / "conf/config.sample.json").read_text())
case("sample config matches the schema", validator.is_valid(sample))

for dt in sorted((top / "conf/device-types").glob("*.json")):
    d = json.loads(dt.read_text())
    need = {"slug", "name", "arch", "yoctoMachine", "partitionTable", "bootPartition",
            "bootloader", "imagePattern", "flashInstructions", "partitions"}
    labels = [p["label"] for p in d.get("partitions", [])]
    case(f"device type {dt.name} is complete", need <= d.keys() and d["slug"] == dt.stem
         and labels == ["fleet-boot", "fleet-rootA", "fleet-rootB", "fleet-state", "fleet-data"],
         f"missing {sorted(need - d.keys())} or labels {labels}")

# The CLI: one line per problem, each naming its JSON path, non-zero exit.
fleet = top / "rust-services/target/debug/fleet"
bad = corpus / "three-mistakes.json"
three = '{"hostname": "bad_host", "persistentLogging": "yes", "os": {"sshKeys": ["nope"]}}'
bad.write_text(three)
try:
    out = subprocess.run([fleet, "config", "validate", bad], capture_output=True, text=True)
finally:
    bad.unlink()
lines = out.stdout.strip().splitlines()
paths = [l.split(": ")[2] for l in lines]
case("fleet config validate: three mistakes, three lines, non-zero exit",
     out.returncode == 1 and paths == ["hostname", "persistentLogging", "os.sshKeys[0]"],
     f"exit {out.returncode}, lines {lines}")
out = subprocess.run([fleet, "config", "validate", top / "conf/config.sample.json"],
                     capture_output=True, text=True)
case("fleet config validate: sample is valid", out.returncode == 0, out.stdout + out.stderr)

sys.exit(1 if failed else 0)
