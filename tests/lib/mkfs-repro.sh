# shellcheck shell=bash
# mkfs_repro ARGS...: mkfs.ext4 as a reproducible image build runs it (fixed UUID, hash seed
# and clock): a rebuild with a change differs only where the change is. Sourced by
# tests/update/run and scripts/bench-ota.
mkfs_repro() { E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -U 3d1c7b9e-5a2f-4c6d-8e0f-1a2b3c4d5e6f \
  -E hash_seed=9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d "$@"; }
