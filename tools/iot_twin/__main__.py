"""``python -m iot_twin`` (with ``lib`` and ``tools`` on PYTHONPATH): see :mod:`iot_twin.cli`."""

import sys

from .cli import main

sys.exit(main())
