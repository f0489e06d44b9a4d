"""The bundle's program: the console entry `entrypoint.boot:main`, frozen by PyInstaller."""

from __future__ import annotations

import sys

from entrypoint.boot import main

sys.exit(main())
