"""Runs test classes of CPython's own test.test_socket and test.test_selectors after
patch_all(), with no hub running (where every patched call must behave like the original), and
prints {"run": N, "failed": [test ids], "missing": [class names]}.
Usage: stdlib_unittests.py CLASS..."""

from theframework.monkey import patch_all

patch_all()

import io  # noqa: E402
import sys  # noqa: E402
import unittest  # noqa: E402

import test.test_selectors  # noqa: E402
import test.test_socket  # noqa: E402
from common import report  # noqa: E402


def main() -> None:
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    missing = []
    for name in sys.argv[1:]:
        case = getattr(test.test_socket, name, None) or getattr(test.test_selectors, name, None)
        if case is None:
            missing.append(name)
            continue
        suite.addTests(loader.loadTestsFromTestCase(case))
    output = io.StringIO()
    result = unittest.TextTestRunner(stream=output, verbosity=0).run(suite)
    failed = sorted({test.id() for test, _trace in result.failures + result.errors})
    sys.stderr.write(output.getvalue())
    report({"run": result.testsRun, "failed": failed, "missing": missing})


if __name__ == "__main__":
    main()
