"""Test-session settings shared by tests/ and the notebooks that nbval executes."""

import os
import tempfile

# Notebooks run by nbval write their runs under reports/<profile>; send them to a scratch
# folder so a test run never reuses (or leaves) records in the repository.
os.environ.setdefault("CONVMIXER_REPORTS", tempfile.mkdtemp(prefix="convmixer-test-reports-"))
