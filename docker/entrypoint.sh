#!/bin/bash
# Put the Xilinx tools on PATH (their settings64.sh scripts), then run the command. HOME must be writable: the
# tools keep state in ~/.Xilinx, and `docker run --user UID:GID` may give a user without a home.
set -e
for settings in /tools/Xilinx/Vivado/"$XILINX_VERSION"/settings64.sh /tools/Xilinx/Vitis_HLS/"$XILINX_VERSION"/settings64.sh; do
    # shellcheck disable=SC1090
    [ -f "$settings" ] && source "$settings"
done
if [ ! -w "${HOME:-/nonexistent}" ]; then export HOME=/tmp; fi
exec "$@"
