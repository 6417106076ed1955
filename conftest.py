"""Test-session settings shared by tests/ and the notebooks that nbval executes."""

import os
import tempfile

# Notebooks run by nbval write their runs under reports/<profile>; send them to a scratch
# folder so a test run never reuses (or leaves) records in the repository.
os.environ.setdefault("CONVMIXER_REPORTS", tempfile.mkdtemp(prefix="convmixer-test-reports-"))
# Decoded-image caches go to a scratch folder too, so tests start from the archives.
os.environ.setdefault("CONVMIXER_CACHE_DIR", tempfile.mkdtemp(prefix="convmixer-test-cache-"))
