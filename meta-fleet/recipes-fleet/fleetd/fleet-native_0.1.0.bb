SUMMARY = "fleetOS host CLI (fleet) for the build host: makes and signs update bundles"
DESCRIPTION = "The fleet command of rust-services/crates/fleet, built for the build host. The \
fleet-bundle class runs its 'fleet bundle create' to turn an image's ext4 root filesystem into \
a signed update bundle."
# Apache-2.0 (fleetOS's own crates) and the licences of the crates linked in, generated from
# Cargo.lock by scripts/gen-crates-inc.
require ${BPN}-licenses.inc
require fleet-rust-services.inc

CARGO_SRC_DIR = "crates/fleet"
CARGO_BUILD_FLAGS:append = " --package fleet"

inherit cargo
inherit_defer native
