#!/usr/bin/env bash
# Build a tiny local image from the host's static busybox: nothing can be pulled here.
# usage: build-busybox-image.sh [TAG]   (default sandboxctl-test/busybox:latest)
set -euo pipefail
tag=${1:-sandboxctl-test/busybox:latest}
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "error: busybox not found: apt-get install busybox-static" >&2; exit 2; }
rootfs=$(mktemp -d); trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,tmp,etc,workspace,proc,sys,dev,root}
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"; done
chmod 1777 "$rootfs/tmp"
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
tar -C "$rootfs" -cf - . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$tag" >/dev/null
echo "$tag"
