"""Load tests against a running service.

Owns the locust users and the latency-vs-sparsity sweep. Speaks to ``service`` over HTTP only:
it never imports ``models``, ``training`` or ``service``; beyond the standard library it uses
only locust and HTTP clients.
"""
