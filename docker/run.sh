#!/bin/bash
# Run the generated Tcl of a build directory inside the fpgagen-xilinx image, the build directory mounted at
# /build and the container running as you (not root). `fpgagen bitstream BUILD --docker` does the same and
# also verifies, resumes and collects deploy/; this script is the manual route.
# Usage: docker/run.sh BUILD_DIR [hls|vivado|all]
set -euo pipefail
build=$(cd "${1:?usage: docker/run.sh BUILD_DIR [hls|vivado|all]}" && pwd)
step=${2:-all}
image=${FPGAGEN_DOCKER_IMAGE:-fpgagen-xilinx:2022.1}
run() {  # run WORKDIR COMMAND...
    local dir=$1
    shift
    docker run --rm --user "$(id -u):$(id -g)" -e HOME=/tmp -e FPGAGEN_COSIM="${FPGAGEN_COSIM:-}" \
        -v "$build:/build" -w "/build/$dir" "$image" "$@"
}
mkdir -p "$build/logs"
if [ "$step" = hls ] || [ "$step" = all ]; then
    run hls vitis_hls -f run_hls.tcl 2>&1 | tee "$build/logs/vitis_hls.log"
fi
if [ "$step" = vivado ] || [ "$step" = all ]; then
    run vivado vivado -mode batch -notrace -source block_design.tcl 2>&1 | tee "$build/logs/vivado.log"
fi
