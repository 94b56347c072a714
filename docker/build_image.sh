#!/bin/bash
# Build the fpgagen-xilinx image from a Xilinx/AMD installer the user supplies (an extracted folder with xsetup,
# or the unified installer's .tar.gz, which is extracted to a temporary folder first). Never downloads anything.
# Usage: docker/build_image.sh /path/to/installer [image-tag]
set -euo pipefail
installer=${1:?usage: docker/build_image.sh /path/to/extracted/installer-or-tar.gz [image-tag]}
tag=${2:-${FPGAGEN_DOCKER_IMAGE:-fpgagen-xilinx:2022.1}}
here=$(cd "$(dirname "$0")" && pwd)
if ! docker info >/dev/null 2>&1; then
    echo "docker/build_image.sh: no Docker engine answers (docker info failed); start one first" >&2
    exit 2
fi
cleanup=""
if [ -f "$installer" ]; then
    tmp=$(mktemp -d)
    cleanup=$tmp
    echo "extracting $installer into $tmp"
    tar -xf "$installer" -C "$tmp"
    installer=$(dirname "$(find "$tmp" -maxdepth 2 -name xsetup -type f | head -n 1)")
fi
if [ ! -x "$installer/xsetup" ]; then
    echo "docker/build_image.sh: no xsetup in $installer (pass the extracted unified installer)" >&2
    exit 2
fi
version=$(basename "$installer" | grep -oE '20[0-9]{2}\.[0-9]' | head -n 1 || true)
DOCKER_BUILDKIT=1 docker build --build-context installer="$installer" \
    --build-arg XILINX_VERSION="${version:-2022.1}" --build-arg USER_UID="$(id -u)" -t "$tag" "$here"
[ -n "$cleanup" ] && rm -rf "$cleanup"
echo "built $tag; now: fpgagen bitstream build/<net> --docker   (or make bitstream USE_DOCKER=1)"
