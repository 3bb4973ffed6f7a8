"""Faults under steady load, and the checks that nothing was lost or charged twice.

`exactness` is the harness (a private topic prefix, tenants, load, a collector of every
decision and audit event, the checks); `scenarios` are the faults. Both the chaos suite
(`tests/chaos/`) and `guardstream chaos SCENARIO` run them.
"""
