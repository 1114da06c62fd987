"""Load tests against a running service.

Owns the locust users and the latency-vs-sparsity sweep. Speaks to ``service`` over HTTP only:
it never imports ``models``, ``training`` or ``service`` (it starts ``sparsegate-serve``,
``sparsegate-train`` and ``sparsegate-variants`` as commands where it needs them); beyond the
standard library it uses locust, httpx, numpy and matplotlib.
"""
