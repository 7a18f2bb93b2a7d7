"""With no hub running, patched modules behave like the originals: CPython's own socket and
selectors test classes run after patch_all(). The few tests that inspect what the patch changes
by design are listed with the reason; any other failure fails this test."""

from __future__ import annotations

import importlib.util

import pytest
from monkey_scripts.runner import run_script

pytestmark = pytest.mark.timeout(120)

CLASSES = [
    # test.test_socket
    "GeneralModuleTests",
    "BasicTCPTest",
    "BasicUDPTest",
    "TCPCloserTest",
    "NonBlockingTCPTests",
    "FileObjectClassTestCase",
    "UnbufferedFileObjectClassTestCase",
    "NetworkConnectionNoServer",
    "NetworkConnectionAttributesTest",
    "NetworkConnectionBehaviourTest",
    "TCPTimeoutTest",
    "UDPTimeoutTest",
    "BasicSocketPairTest",
    "ContextManagersTest",
    "InheritanceTest",
    "SendfileUsingSendTest",
    "SendfileUsingSendfileTest",
    "TestUnixDomain",
    "RecvmsgSCMRightsStreamTest",
    "SendmsgUnixStreamTest",
    "NonblockConstantTest",
    "CreateServerTest",
    "CreateServerFunctionalTest",
    # test.test_selectors
    "SelectSelectorTestCase",
    "PollSelectorTestCase",
    "DefaultSelectorTestCase",
]

PREFIX = "test.test_socket."
# Differences by design (docs/monkey.md, "Caveats"):
DEVIATIONS = {
    # socket.SocketType is the green class, not _socket.socket.
    PREFIX + "GeneralModuleTests.test_SocketType_is_socketobject",
    # getnameinfo is a Python wrapper; the test counts references across its error path.
    PREFIX + "GeneralModuleTests.testRefCountGetNameInfo",
    # The OS fd stays O_NONBLOCK whatever the Python-level timeout; these read the fd flags.
    PREFIX + "NonBlockingTCPTests.testSetBlocking",
    PREFIX + "NonBlockingTCPTests.testSetBlocking_overflow",
    PREFIX + "NonblockConstantTest.test_SOCK_NONBLOCK",
}


def test_socket_and_selectors_suites_without_hub() -> None:
    if importlib.util.find_spec("test.test_socket") is None:
        pytest.skip(
            "CPython's test package is not installed (python3-test on Debian); "
            "test_monkey_stdlib.py checks the behaviour outside a hub on its own"
        )
    report = run_script("stdlib_unittests.py", *CLASSES, timeout=110)
    assert report["missing"] == []
    assert report["run"] >= 250
    unexpected = set(report["failed"]) - DEVIATIONS
    assert not unexpected, sorted(unexpected)
