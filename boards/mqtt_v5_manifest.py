# The mqtt_v5 modules to freeze, in one place. Every board manifest here includes this file
# (as does boards/unix/manifest.py, the unix-port build the suite tests the frozen code with),
# so a module added to lib/mqtt_v5/ is frozen everywhere at once.
#
#   include("../mqtt_v5_manifest.py")             # core + mqtt_v5.aws (when present)
#   include("../mqtt_v5_manifest.py", aws=False)  # core only
#
# Paths are relative to this file: MicroPython's manifestfile.py runs every manifest with its
# own folder as the working directory.

import os

options.defaults(aws=True)

_LIB = "../lib"
# Imported only by _compat's CPython branch: never frozen, never installed by mip
# (tools/gen_package_json.py's CPYTHON_ONLY lists the same files).
_CPYTHON_ONLY = ("_compat_cpython.py", "_cpython_stream.py")

with open(_LIB + "/mqtt_v5/__init__.py") as _f:
    _version = [ln.split("=")[1].strip().strip("\"'") for ln in _f
                if ln.startswith("__version__")]
metadata(description="MQTT v5 client with AWS IoT Core support",
         version=_version[0] if _version else "0.1.0")

# The core: the package's own modules only (subpackages are separate, optional parts).
package("mqtt_v5", base_path=_LIB, files=sorted(
    n for n in os.listdir(_LIB + "/mqtt_v5") if n.endswith(".py") and n not in _CPYTHON_ONLY))

# mqtt_v5.aws (shadow, jobs, provisioning): a separate, optional part.
if options.aws and os.path.isdir(_LIB + "/mqtt_v5/aws"):
    package("mqtt_v5/aws", base_path=_LIB)
