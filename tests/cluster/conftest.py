"""The cluster scenarios (issue #17) use the fault suite's books and worker fixtures
(tests/faults/) on this session's private 3-node cluster (``private_cluster``)."""

from faults.conftest import fault_workers, ledger, scale

__all__ = ["fault_workers", "ledger", "scale"]
