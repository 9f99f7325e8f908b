"""``streamledger demo`` end to end (small size), twice: the second run must work as well."""

from __future__ import annotations

import re

import pytest

from streamledger.settings import Settings, replace
from tests.conftest import run_streamledger
from tests.system.free_ports import free_port_range
from workloads.api_stack import free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

SMALL = ["--tenants=2", "--accounts=20", "--commands=400", "--poison=2"]


def test_demo_runs_twice_with_a_fresh_namespace_and_a_clean_verify(
    projection_settings: Settings,
) -> None:
    # 3 metrics ports for the pipeline, the fourth for the API, the fifth for the webhook
    # dispatcher (after the supervisor's own, which the demo does not serve); Prometheus apart.
    base_port = free_port_range(5)
    settings = replace(projection_settings, metrics_port=base_port, prometheus_port=free_port())
    namespaces = []
    for _ in range(2):
        result = run_streamledger(["demo", *SMALL, f"--api-port={base_port + 3}"], settings)
        assert result.returncode == 0, result.stdout + result.stderr
        output = result.stdout
        assert "verify: ok" in output, output
        assert re.search(r"DLQ: 2 records for these tenants, 2 poison sent .*: ok", output), output
        assert "(exit code 0)" in output, output
        assert "as of:" in output, output
        assert f"prometheus: http://127.0.0.1:{settings.prometheus_port}" in output, output
        assert re.search(
            r"GET http://127\.0\.0\.1:\d+/v1/accounts/acct-0001/balance  ->  200", output
        )
        assert '"account_id":"acct-0001"' in output, output
        assert "multi-leg transactions (ledger.transactions), per tenant:" in output, output
        assert re.search(r" [1-9][\d,]* transactions \(", output), output  # fee splits and more
        assert "3 of 3 deliveries received, signatures checked:" in output, output
        assert len(re.findall(r"  TransferPosted  sequence \d+ .* signature: ok", output)) == 3
        assert "2 of 2 monitor notifications received, signatures checked:" in output, output
        for kind in ("monitor.triggered", "monitor.cleared"):  # the low-balance monitor's
            assert len(re.findall(rf"  {kind}  sequence \d+ .* signature: ok", output)) == 1
        # the synthetic statement: imported, matched, exactly its perturbations found
        assert re.search(r"imported: \d+ lines in the file, \d+ new", output), output
        assert re.search(r"expected from the perturbations: .*: ok$", output, re.M), output
        assert "balance check at the end of" in output, output
        found = re.search(r"tenants (run\d+-s7)-tenant-\*", output)
        assert found is not None, output
        namespaces.append(found.group(1))
    assert namespaces[0] != namespaces[1]
