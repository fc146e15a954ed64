"""The tests mirror the packages: ``tests/<package>/test_<module>.py``; helpers shared by several are in
``tests/fixtures.py`` and fixtures in ``tests/conftest.py``. Imported before either, so that no hub is asked and
exported graphs and backend probes go to a fresh cache per test session, not the user's."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UNETSEG_CACHE", tempfile.mkdtemp(prefix="unetseg-cache-"))
