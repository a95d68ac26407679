# Freeze manifest for any MicroPython ESP32 board: the port's default modules (asyncio, mip,
# ...) plus mqtt_v5. The boards/<BOARD>/ folders hold the same for the boards we build and
# test (`make firmware BOARD=...`); use this one for another board:
#
#   make -C $MICROPY_DIR/ports/esp32 BOARD=<board> FROZEN_MANIFEST=$PWD/boards/manifest.py
#
# FROZEN_MANIFEST replaces the board's own manifest, so this one includes the port's first.

include("$(PORT_DIR)/boards/manifest.py")
include("mqtt_v5_manifest.py")
