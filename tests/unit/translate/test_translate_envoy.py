"""Real Envoy accepts what every golden case translates to.

For each case and proxy, the built listeners, clusters and secrets go into a
static bootstrap (``envoy_validate``) and ``envoy --mode validate`` checks it
(regexes, filter configs, cluster types, certificates) without binding ports
or connecting anywhere. The proxies of one case run side by side.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from translate_cases import case_names, translate_case

from envoy_validate import bootstrap, validate

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", case_names())
def test_envoy_accepts_case(case: str, tmp_path: Path) -> None:
    configs = {
        f"{case}-{proxy}": bootstrap(proxy, config)
        for proxy, config in translate_case(case).proxies.items()
    }
    failures = validate(configs, tmp_path)
    assert not failures, "\n".join(failures)
