# shellcheck shell=bash
# A device root for `fleetd --root` (sourced by tests/update/run and scripts/bench-ota): the
# slots are symlinks /dev/vda2, /dev/vda3 to image files, udev's view of them in /sys, the
# kernel command line in /proc, the trusted key $keys/release.pub, device type qemux86-64 and
# VERSION_ID 1.0.
# fake_root DIR BOOTLOADER(grub|uboot|none) LAYOUT(gpt|mbr) SLOT_A_DEV SLOT_B_DEV
fake_root() {
  local r=$1 bl=$2 layout=$3 a=$4 b=$5 n
  mkdir -p "$r"/{proc,dev,etc/fleet/keys,mnt/boot/EFI/fleet}
  cp "$keys/release.pub" "$r/etc/fleet/keys/"
  echo qemux86-64 >"$r/etc/fleet/device-type"
  printf 'ID=fleetos\nVERSION_ID=1.0\n' >"$r/etc/os-release"
  for n in 2 3; do
    mkdir -p "$r/sys/class/block/vda$n"
    {
      printf 'DEVNAME=vda%s\nDEVTYPE=partition\nPARTN=%s\n' $n $n
      if [ "$layout" = gpt ]; then
        [ $n = 2 ] && echo PARTNAME=fleet-rootA || echo PARTNAME=fleet-rootB
        echo "PARTUUID=6f1d3c2a-8b7e-4c1d-9e2f-00000000000$n"
      else
        echo "PARTUUID=1234abcd-0$n"
      fi
    } >"$r/sys/class/block/vda$n/uevent"
  done
  ln -s "$a" "$r/dev/vda2"
  ln -s "$b" "$r/dev/vda3"
  if [ "$layout" = gpt ]; then
    echo "BOOT_IMAGE=/boot/bzImage root=PARTUUID=6f1d3c2a-8b7e-4c1d-9e2f-000000000002 ro fleet.slot=A" >"$r/proc/cmdline"
  else
    # No fleet.slot=: the running slot must come from the root partition's ext4 label.
    echo "console=serial0,115200 root=PARTUUID=1234abcd-02 ro rootwait" >"$r/proc/cmdline"
  fi
  if [ "$bl" = none ]; then
    :
  elif [ "$bl" = grub ]; then
    grub-editenv "$r/mnt/boot/EFI/fleet/grubenv" create
    grub-editenv "$r/mnt/boot/EFI/fleet/grubenv" set fleet_active=A
  else
    # A device from before the two-copy state: the old boot.scr's saveenv left U-Boot's
    # default environment plus fleet_active in uboot.env; fleetd migrates from it.
    printf '%s\n' 'arch=arm' 'bootcmd=run distro_bootcmd' 'bootdelay=2' 'fleet_active=A' \
      'kernel_addr_r=0x00080000' >"$work/uboot-defaults.txt"
    mkenvimage -p 0 -s 16384 -o "$r/mnt/boot/uboot.env" "$work/uboot-defaults.txt"
    echo "$r/mnt/boot/uboot.env 0x0 0x4000" >"$r/fw_env.config"
  fi
}
