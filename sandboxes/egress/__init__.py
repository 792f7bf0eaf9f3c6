"""Egress allow-lists: which hosts and networks a sandbox may reach.

``policy`` validates and matches allow-lists, ``tls`` reads the server name out of a
TLS ClientHello, and ``proxy`` is the filtering forward proxy that sandboxes with
an allow-list reach the web through. The firewall rules that keep such a sandbox's
direct traffic to its allow-listed networks live with the Docker backend
(``sandboxes/backends/egress_rules.py``).
"""
