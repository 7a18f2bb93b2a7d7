"""Takes 30 s to import: never ready within a short --startup-timeout."""

import time

time.sleep(30)
