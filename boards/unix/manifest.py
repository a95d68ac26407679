# The unix port with mqtt_v5 frozen in, as the board manifests freeze it into ESP32 firmware:
# the suite builds it (../shared/micropython/build-unix.sh OUT boards/unix/manifest.py) and
# runs the client tests on it, so frozen code is tested code. The first two lines keep what
# the unix port freezes by default (asyncio, mip, ssl).

include("$(PORT_DIR)/variants/manifest.py")
include("$(MPY_DIR)/extmod/asyncio")
include("../mqtt_v5_manifest.py")
