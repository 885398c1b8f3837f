"""``ledger demo``: a generated month for the example contracts, recorded and reported.

Here, not in ``ledger/``: the demo is a sample for the command line (only ``ledger demo``
and the tests use it); the core never imports it, and ``run`` needs the application,
a layer above the domain. ``cast`` holds the services, ``story`` the facts, ``run`` the command's work.
"""

from cli.demo.cast import EXAMPLES_DIR, demo_month, demo_services, example_policy_paths
from cli.demo.story import demo_facts

__all__ = ["EXAMPLES_DIR", "demo_facts", "demo_month", "demo_services", "example_policy_paths"]
